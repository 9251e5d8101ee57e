"""The SQL adapters of the job and erasure stores (sqlmodel; SQLite or PostgreSQL)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from services.ingestion.adapters import store
from services.ingestion.domain.dedup import DedupConfig, LSHIndex
from services.ingestion.domain.pipeline import ChunkResult, Report
from services.ingestion.ports import Job, Outgoing
from shared.bus.store import UnitOfWork
from shared.claims import BATCH_MEDIA_TYPE, BlobWriter
from shared.events.envelope import ClaimCheck
from shared.events.ingest import IngestCompleted, IngestRequested, RowLineage
from shared.storage.lease import DEFAULT_TTL_S, Leases


def completed_event_id(request: IngestRequested) -> uuid.UUID:
    """The report's id: a replayed or resumed request reports under the same id."""
    return uuid.uuid5(request.event_id, "completed")


_LINEAGE_FIELDS = ("record_id", "status", "source", "line", "duplicate_of", "similarity")


def pack_lineage(
    session: Session, request_id: str, artifacts: BlobWriter, claim_bytes: int
) -> tuple[list[RowLineage], ClaimCheck | None]:
    """The request's lineage as ``claims.pack`` gives it (inline while small, else a claim
    check of JSON lines), encoded from the plain rows: a large request's tens of thousands
    of rows need no RowLineage object each (their values are the table's: a status of the
    model's, strings, an int and a float)."""
    rows = store.request_lineage_rows(session, request_id)
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    body = "".join(
        dumps(dict(zip(_LINEAGE_FIELDS, row, strict=True))) + "\n" for row in rows
    ).encode()
    if len(body) <= claim_bytes:
        return [RowLineage(**dict(zip(_LINEAGE_FIELDS, row, strict=True))) for row in rows], None
    return [], artifacts.put_bytes(body, BATCH_MEDIA_TYPE)


class SqlJobStore:
    """Several processes may share the table: ``next_job`` leases the job it returns to
    this process, and ``save_chunk`` and ``finish`` commit only while the lease is still
    this process' (else ``LeaseLostError``, nothing written); each write extends it."""

    def __init__(
        self,
        engine: Engine,
        producer: str,
        artifacts: BlobWriter,
        claim_bytes: int = 256_000,
        lease_s: float = DEFAULT_TTL_S,
    ) -> None:
        self.engine = engine
        self.producer = producer
        self.artifacts = artifacts  # large lineages travel by claim check (no text in them)
        self.claim_bytes = claim_bytes
        self.leases = Leases(store.IngestJob, ttl_s=lease_s)

    def add(self, uow: UnitOfWork, request: IngestRequested) -> None:
        uow.session.add(
            store.IngestJob(
                request_id=str(request.event_id),
                dataset=request.dataset,
                request_json=request.model_dump_json(),
            )
        )

    def next_job(self) -> str | None:
        """The oldest unfinished job no other process holds, leased to this one.

        A dataset's jobs run one after the other, in arrival order, as in one process: only
        its oldest unfinished job may be claimed (a job dedups against the index the jobs
        before it grew), so two processes never run two jobs of one dataset at once.
        """
        with Session(self.engine) as session:
            unfinished = session.exec(
                select(store.IngestJob.request_id, store.IngestJob.dataset)
                .where(col(store.IngestJob.status).in_(["pending", "running"]))
                .order_by(col(store.IngestJob.created_at), col(store.IngestJob.request_id))
            ).all()
        heads: dict[str, str] = {}
        for request_id, dataset in unfinished:
            heads.setdefault(dataset, request_id)
        for request_id in heads.values():
            if self.leases.claim(self.engine, {"request_id": request_id}):
                return request_id
        return None

    def load(self, request_id: str) -> Job:
        with Session(self.engine) as session:
            row = session.get(store.IngestJob, request_id)
            if row is None:
                raise KeyError(f"no ingest job {request_id}")
            return Job(
                request=IngestRequested.model_validate_json(row.request_json),
                position=row.position,
                batch_index=row.batch_index,
                report=Report.from_dict(row.report or {}),
                status=row.status,
            )

    def load_index(self, dataset: str, dedup: DedupConfig) -> tuple[dict[str, str], LSHIndex]:
        with Session(self.engine) as session:
            return store.load_index(session, dataset, dedup)

    def save_chunk(
        self, job: Job, result: ChunkResult, dedup: DedupConfig, events: Sequence[Outgoing]
    ) -> None:
        with Session(self.engine) as session:
            row = session.get(store.IngestJob, job.request_id)
            assert row is not None
            uow = UnitOfWork(session, self.producer)
            store.save_chunk(session, job.request.dataset, job.request_id, result, dedup)
            for event, topic in events:
                uow.emit(event, topic=topic)
            row.position = job.position
            row.batch_index = job.batch_index
            row.report = job.report.to_dict()
            row.status = job.status = "running"
            row.updated_at = datetime.now(UTC)
            session.add(row)
            session.flush()
            self.leases.fence(session, {"request_id": job.request_id})
            session.commit()

    def finish(self, job: Job, failed: str | None = None, also: Sequence[Outgoing] = ()) -> None:
        """The report with the request's lineage, and the job marked done; once."""
        request = job.request
        with Session(self.engine) as session:
            row = session.get(store.IngestJob, job.request_id, with_for_update=True)
            assert row is not None
            if row.status in ("done", "failed"):
                job.status = row.status
                return
            uow = UnitOfWork(session, self.producer)
            lineage, claim = pack_lineage(session, job.request_id, self.artifacts, self.claim_bytes)
            uow.emit(
                request.caused(
                    IngestCompleted,
                    event_id=completed_event_id(request),
                    dataset=request.dataset,
                    request_id=request.event_id,
                    failed=failed,
                    lineage=lineage,
                    lineage_claim=claim,
                    **job.report.to_dict(),
                )
            )
            for event, topic in also:
                uow.emit(event, topic=topic)
            row.status = job.status = "failed" if failed else "done"
            row.report = job.report.to_dict()
            if request.records:  # inline raw text was needed to run the job, not afterwards
                row.request_json = request.model_copy(update={"records": []}).model_dump_json()
            row.updated_at = datetime.now(UTC)
            session.add(row)
            session.flush()
            self.leases.fence(session, {"request_id": job.request_id})
            session.commit()


class SqlErasureStore:
    def held(self, uow: UnitOfWork, record_ids: Sequence[str]) -> list[str]:
        return list(store.lineage_of(uow.session, record_ids))

    def forget(self, uow: UnitOfWork, record_ids: Sequence[str]) -> dict[str, int]:
        return store.forget(uow.session, record_ids)
