"""What the audit use cases need from storage."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from services.audit.domain import Entry


class AuditLog(Protocol):
    """An append-only sequence of entries."""

    def last(self) -> Entry | None: ...

    def append(self, entry: Entry) -> None: ...

    def entries(self) -> Iterator[Entry]: ...

    def search(
        self, *, action: str | None, actor: str | None, limit: int, newest_first: bool
    ) -> list[Entry]: ...
