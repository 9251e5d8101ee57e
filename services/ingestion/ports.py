"""What the ingestion service's work depends on, as Protocols (adapters implement them)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from services.ingestion.domain.pipeline import RawRow
from shared.events.ingest import SourceSpec


class SourceReader(Protocol):
    """Streams the rows of one source; bad input becomes rows with an error, never raises."""

    def __call__(self, spec: SourceSpec, *, max_line_bytes: int) -> Iterator[RawRow]: ...


class LanguageDetector(Protocol):
    """ISO 639-1 code of a text's language."""

    def __call__(self, text: str) -> str: ...
