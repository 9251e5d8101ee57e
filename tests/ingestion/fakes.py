"""Hand-written fakes of ingestion's ports (``services/ingestion/ports.py``).

The job store keeps jobs as the SQL adapter does: a job read back is a copy, so only
what ``save_chunk`` / ``finish`` stored survives a "crash" of the runner.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from services.ingestion.domain.dedup import DedupConfig, LSHIndex
from services.ingestion.domain.pipeline import ChunkResult
from services.ingestion.ports import Job, Outgoing
from shared.bus.store import UnitOfWork
from shared.events import Event, IngestCompleted, IngestRequested
from shared.events.ingest import RowLineage


class CrashError(RuntimeError):
    """The fake's stand-in for a process killed mid-transaction."""


class FakeJobStore:
    def __init__(self, *, crash_on_save: set[int] | None = None) -> None:
        self.jobs: dict[str, Job] = {}
        self.emitted: list[Event] = []
        self.fingerprints: dict[str, dict[str, str]] = {}
        self.signatures: dict[str, dict[str, np.ndarray]] = {}
        self.lineage: dict[str, dict[str, Any]] = {}  # request id -> record id -> entry
        self.saves = 0
        self.crash_on_save = crash_on_save or set()  # 1-based save_chunk calls that fail
        self._lock = threading.Lock()

    def add(self, uow: UnitOfWork, request: IngestRequested) -> None:
        with self._lock:
            self.jobs.setdefault(str(request.event_id), Job(request=request))

    def next_job(self) -> str | None:
        with self._lock:
            return next(
                (rid for rid, job in self.jobs.items() if job.status in ("pending", "running")),
                None,
            )

    def load(self, request_id: str) -> Job:
        with self._lock:
            return copy.deepcopy(self.jobs[request_id])

    def load_index(self, dataset: str, dedup: DedupConfig) -> tuple[dict[str, str], LSHIndex]:
        lsh = LSHIndex(dedup)
        for rid, sig in self.signatures.get(dataset, {}).items():
            lsh.insert(rid, sig)
        return dict(self.fingerprints.get(dataset, {})), lsh

    def save_chunk(
        self, job: Job, result: ChunkResult, dedup: DedupConfig, events: Sequence[Outgoing]
    ) -> None:
        with self._lock:
            self.saves += 1
            if self.saves in self.crash_on_save:
                raise CrashError(f"crash on save {self.saves}")
            dataset = job.request.dataset
            self.fingerprints.setdefault(dataset, {}).update(dict(result.fingerprints))
            self.signatures.setdefault(dataset, {}).update(dict(result.signatures))
            rows = self.lineage.setdefault(job.request_id, {})
            rows.update({e.record_id: e for e in result.lineage})
            self.emitted += [event for event, _topic in events]
            job.status = "running"
            self.jobs[job.request_id] = copy.deepcopy(job)

    def finish(self, job: Job, failed: str | None = None, also: Sequence[Outgoing] = ()) -> None:
        with self._lock:
            stored = self.jobs[job.request_id]
            if stored.status in ("done", "failed"):
                return
            self.emitted += [event for event, _topic in also]
            lineage = [
                RowLineage(
                    record_id=e.record_id,
                    status=e.status,
                    source=e.source,
                    line=e.line,
                    duplicate_of=e.duplicate_of,
                    similarity=e.similarity,
                )
                for e in self.lineage.get(job.request_id, {}).values()
            ]
            self.emitted.append(
                job.request.caused(
                    IngestCompleted,
                    dataset=job.request.dataset,
                    request_id=job.request.event_id,
                    failed=failed,
                    lineage=lineage,
                    **job.report.to_dict(),
                )
            )
            job.status = "failed" if failed else "done"
            self.jobs[job.request_id] = copy.deepcopy(job)

    def of(self, kind: type[Event]) -> list[Any]:
        return [e for e in self.emitted if isinstance(e, kind)]


class FakeErasureStore:
    def __init__(self, held: set[str]) -> None:
        self.held_in = held  # record ids with lineage here
        self.forgotten: list[str] = []

    def held(self, uow: UnitOfWork, record_ids: Sequence[str]) -> list[str]:
        return [rid for rid in record_ids if rid in self.held_in]

    def forget(self, uow: UnitOfWork, record_ids: Sequence[str]) -> dict[str, int]:
        self.forgotten += record_ids
        return {"fingerprints": len(record_ids)}
