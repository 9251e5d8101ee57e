"""The SQL adapters of the job and erasure stores (sqlmodel; SQLite or PostgreSQL)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from services.ingestion.adapters import store
from services.ingestion.domain.dedup import DedupConfig, LSHIndex
from services.ingestion.domain.pipeline import ChunkResult, Report
from services.ingestion.ports import Job, Outgoing
from services.ingestion.versions import complete_job
from shared.bus.store import UnitOfWork
from shared.events.ingest import IngestRequested
from shared.storage import ArtifactStore


class SqlJobStore:
    def __init__(self, engine: Engine, producer: str, artifacts: ArtifactStore) -> None:
        self.engine = engine
        self.producer = producer
        self.artifacts = artifacts

    def add(self, uow: UnitOfWork, request: IngestRequested) -> None:
        uow.session.add(
            store.IngestJob(
                request_id=str(request.event_id),
                dataset=request.dataset,
                request_json=request.model_dump_json(),
            )
        )

    def next_job(self) -> str | None:
        with Session(self.engine) as session:
            job = session.exec(
                select(store.IngestJob)
                .where(col(store.IngestJob.status).in_(["pending", "running"]))
                .order_by(col(store.IngestJob.created_at))
                .limit(1)
            ).first()
            return job.request_id if job else None

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
            session.commit()

    def finish(self, job: Job, failed: str | None = None, also: Sequence[Outgoing] = ()) -> None:
        with Session(self.engine) as session:
            uow = UnitOfWork(session, self.producer)
            complete_job(uow, self.artifacts, job.request, job.report, failed=failed)
            for event, topic in also:
                uow.emit(event, topic=topic)
            session.commit()
        job.status = "failed" if failed else "done"


class SqlErasureStore:
    def held(self, uow: UnitOfWork, record_ids: Sequence[str]) -> list[str]:
        return list(store.lineage_of(uow.session, record_ids))

    def versions_containing(self, uow: UnitOfWork, record_ids: Sequence[str]) -> list[str]:
        return store.versions_containing(uow.session, record_ids)

    def forget(self, uow: UnitOfWork, record_ids: Sequence[str]) -> dict[str, int]:
        return store.forget(uow.session, record_ids)
