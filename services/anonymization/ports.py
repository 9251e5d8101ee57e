"""What the anonymization domain needs from the outside world."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from services.anonymization.domain import Redacted, VaultEntry

# (entity_type, original value) -> replacement text
ReplaceFn = Callable[[str, str], str]


class PiiEngine(Protocol):
    """Detects PII in a batch of texts and replaces each finding through ``replace``."""

    def process(self, texts: Sequence[str], replace: Sequence[ReplaceFn]) -> list[Redacted]:
        """One ``replace`` per text; returns the texts with every finding replaced."""
        ...


@dataclass
class ErasureOutcome:
    found: bool
    records: list[str] = field(default_factory=list)
    dataset_versions: list[str] = field(default_factory=list)
    model_versions: list[str] = field(default_factory=list)
    removed: dict[str, int] = field(default_factory=dict)


class SubjectKeys(Protocol):
    """Each data subject's own key (created on first sight, destroyed by erasure)."""

    def subject_keys(self, subjects: set[str]) -> dict[str, bytes]: ...


class KnownValues(Protocol):
    """Keyed hashes of values detected with confidence: hash -> (entity type, subject)."""

    def remember(self, values: dict[str, tuple[str, str]]) -> None: ...

    def lookup(self, hashes: set[str]) -> dict[str, str]:
        """Of these hashes, the known ones with their entity type."""
        ...


class Vault(SubjectKeys, KnownValues, Protocol):
    """Sealed originals, subject keys, the subject index and its lineage (one transaction)."""

    def save(self, entries: Sequence[VaultEntry], dataset: str) -> None: ...

    def erase(self, subject_ref: str, request_id: str) -> ErasureOutcome: ...

    def erased(self, subject_ref: str) -> bool: ...

    def open_record(self, record_id: str) -> dict[str, Any]:
        """The original text and values; ``UnreadableError`` once erased, KeyError if unknown."""
        ...

    def field_ids(self, record_id: str) -> list[str]:
        """Ids of the record's anonymized metadata fields (``<record_id>#<path>``)."""
        ...

    def add_dataset_version(self, dataset: str, version: str, record_ids: Sequence[str]) -> int: ...

    def add_model_version(self, dataset: str, version: str, model: str) -> None: ...


class ArtifactReader(Protocol):
    def get_bytes(self, claim: Any) -> bytes: ...

    def put_bytes(self, data: bytes, media_type: str = ...) -> Any: ...


class TransitReader(Protocol):
    """The transit store of raw claim-checked batches: read once, then deleted."""

    def get_bytes(self, claim: Any) -> bytes: ...

    def delete(self, claim: Any) -> bool: ...
