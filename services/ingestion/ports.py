"""What the ingestion service's work depends on, as Protocols (adapters implement them).

The use cases (``jobs.py``, ``erasure.py``) call these, never sqlmodel: the SQL adapters
are in ``adapters/sql.py``, hand-written fakes in ``tests/ingestion/fakes.py``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from services.ingestion.domain.dedup import DedupConfig, LSHIndex
from services.ingestion.domain.pipeline import ChunkResult, RawRow, Report
from services.ingestion.policy import SourcePolicy
from shared.bus.store import UnitOfWork
from shared.events.envelope import Event
from shared.events.ingest import IngestRequested, SourceSpec
from shared.topics import Topic

Outgoing = tuple[Event, Topic | None]  # an event and its topic (None: the event's own)


class SourceReader(Protocol):
    """Streams the rows of one source; bad input becomes rows with an error. The one thing
    it raises: ``SourceDeniedError`` when the source, or a file it expands to (a symlink
    in a directory, a glob), is outside ``policy``."""

    def __call__(
        self, spec: SourceSpec, *, max_line_bytes: int, policy: SourcePolicy | None = None
    ) -> Iterator[RawRow]: ...


class LanguageDetector(Protocol):
    """ISO 639-1 code of a text's language."""

    def __call__(self, text: str) -> str: ...


@dataclass
class Job:
    """An ingest request and its checkpoint: rows applied, batches sent, counters."""

    request: IngestRequested
    position: int = 0
    batch_index: int = 0
    report: Report = field(default_factory=Report)
    status: str = "pending"  # pending | running | done | failed

    @property
    def request_id(self) -> str:
        return str(self.request.event_id)


class JobStore(Protocol):
    """Ingest jobs, their checkpoints and the dedup index they grow.

    ``save_chunk`` and ``finish`` are each ONE transaction with the events they publish
    (outbox): a crash leaves the job at its last checkpoint, nothing emitted twice.
    """

    def add(self, uow: UnitOfWork, request: IngestRequested) -> None:
        """Store a new job in the handler's transaction (with its inbox row)."""

    def next_job(self) -> str | None:
        """The oldest pending or running job's request id that no other process holds,
        now held by this one (a lease: ``save_chunk`` and ``finish`` raise
        ``shared.storage.lease.LeaseLostError`` once another process took the job over)."""

    def load(self, request_id: str) -> Job: ...

    def load_index(self, dataset: str, dedup: DedupConfig) -> tuple[dict[str, str], LSHIndex]:
        """The dataset's dedup index: exact fingerprints and MinHash signatures."""

    def save_chunk(
        self, job: Job, result: ChunkResult, dedup: DedupConfig, events: Sequence[Outgoing]
    ) -> None:
        """Index entries, lineage, the events and the job's checkpoint, atomically."""

    def finish(self, job: Job, failed: str | None = None, also: Sequence[Outgoing] = ()) -> None:
        """Emit the report with the request's lineage (and ``also``, e.g. an audit event),
        mark the job done (or failed); a no-op for a job already finished."""


class ErasureStore(Protocol):
    """What ingestion holds about records, for erasure (in the handler's transaction)."""

    def held(self, uow: UnitOfWork, record_ids: Sequence[str]) -> list[str]:
        """The ids among ``record_ids`` that this service has lineage of."""

    def forget(self, uow: UnitOfWork, record_ids: Sequence[str]) -> dict[str, int]:
        """Drop dedup entries of the records and their duplicates; scrub lineage."""
