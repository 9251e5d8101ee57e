"""The job runner: turns stored ingest requests into batches, chunk by chunk, resumably.

A request is stored by its handler (with the inbox row). The runner then reads its
sources in a worker thread. Each chunk of rows commits in ONE transaction: dedup index
entries, lineage, the RecordsIngested batches (outbox, deterministic event ids) and the
job's checkpoint (position in the source stream, counters). A process killed mid-request
resumes at the last checkpoint: nothing is lost, nothing is emitted twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import shutil
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlmodel import Session, col, select

from services.ingestion.adapters import store
from services.ingestion.config import IngestionSettings
from services.ingestion.domain.cleaning import CleaningConfig
from services.ingestion.domain.dedup import DedupConfig
from services.ingestion.domain.pipeline import Pipeline, RawRow, Report
from services.ingestion.ports import LanguageDetector, SourceReader
from services.ingestion.versions import complete_job
from shared.bus.store import UnitOfWork
from shared.events.envelope import ClaimCheck
from shared.events.ingest import IngestProgressed, IngestRequested, Record, RecordsIngested
from shared.runtime import Runtime
from shared.topics import Topic

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 3


def batch_event_id(request_id: str, name: str) -> uuid.UUID:
    """Deterministic ids: a resumed or replayed request emits the same events."""
    return uuid.uuid5(uuid.UUID(request_id), name)


def progress_topic() -> Topic | None:
    try:
        return Topic.for_event(IngestProgressed)
    except KeyError:  # topic not in the catalogue yet: progress rides on RecordsIngested
        return None


def resolve_configs(
    settings: IngestionSettings, overrides: dict[str, Any]
) -> tuple[CleaningConfig, DedupConfig]:
    """Service defaults with a request's overrides; ValueError with every problem."""
    overrides = dict(overrides)
    dedup_overrides = overrides.pop("dedup", {}) or {}
    if not isinstance(dedup_overrides, dict):
        raise ValueError("invalid cleaning settings: dedup must be an object")
    cleaning = CleaningConfig.with_overrides(settings.cleaning, overrides)
    try:
        dedup = DedupConfig.model_validate({**settings.dedup.model_dump(), **dedup_overrides})
    except ValueError as exc:
        raise ValueError(f"invalid dedup settings: {exc}") from None
    return cleaning, dedup


class IngestRunner:
    def __init__(
        self,
        runtime: Runtime,
        settings: IngestionSettings,
        reader: SourceReader,
        detect_language: LanguageDetector | None,
        fingerprint_key: bytes,
    ) -> None:
        assert runtime.engine is not None
        self.runtime = runtime
        self.engine = runtime.engine
        self.settings = settings
        self.reader = reader
        self.detect_language = detect_language
        self.key = fingerprint_key
        # where versions used to collect raw records (before they were cut from anonymized
        # ones): whatever an older release left there is raw text, removed at start
        self.legacy_spool = Path(settings.data_dir) / "ingestion" / "spool"
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._failures: dict[str, int] = {}

    # -- lifecycle -------------------------------------------------------------------
    def kick(self) -> None:
        self._wake.set()

    async def start(self) -> None:
        shutil.rmtree(self.legacy_spool, ignore_errors=True)
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.create_task(self._run(), name="ingest-runner")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def alive(self) -> bool:
        return self._task is not None and not self._task.done()

    async def _run(self) -> None:
        while True:
            request_id = self._next_job()
            if request_id is None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=self.settings.poll_s)
                self._wake.clear()
                continue
            try:
                await asyncio.to_thread(self.run_job, request_id)
            except asyncio.CancelledError:
                raise
            except Exception:
                failures = self._failures[request_id] = self._failures.get(request_id, 0) + 1
                log.exception("ingest job failed", extra={"request_id": request_id})
                if failures >= MAX_ATTEMPTS:
                    await asyncio.to_thread(self.fail_job, request_id, "internal error; see logs")
                await asyncio.sleep(min(5.0, 0.5 * 2**failures))

    def _next_job(self) -> str | None:
        with Session(self.engine) as session:
            job = session.exec(
                select(store.IngestJob)
                .where(col(store.IngestJob.status).in_(["pending", "running"]))
                .order_by(col(store.IngestJob.created_at))
                .limit(1)
            ).first()
            return job.request_id if job else None

    def _kick_relay(self) -> None:
        relay = self.runtime.bus.relay
        if relay is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(relay.kick)

    # -- the work (worker thread) ----------------------------------------------------
    def rows(self, request: IngestRequested) -> Iterator[RawRow]:
        for spec in request.sources:
            yield from self.reader(spec, max_line_bytes=self.settings.max_line_bytes)
        for index, fields in enumerate(request.records, 1):
            yield RawRow("inline", index, fields=fields)
        if not request.sources and not request.records:
            yield RawRow("request", None, error="no source and no inline record", file_level=True)

    def run_job(self, request_id: str) -> None:
        with Session(self.engine) as session:
            job = session.get(store.IngestJob, request_id)
            assert job is not None
            request = IngestRequested.model_validate_json(job.request_json)
            position, report = job.position, Report.from_dict(job.report or {})
        try:
            cleaning, dedup = resolve_configs(self.settings, request.cleaning)
        except ValueError as exc:
            self.fail_job(request_id, str(exc))
            return
        with Session(self.engine) as session:
            exact, lsh = store.load_index(session, request.dataset, dedup)
        pipeline = Pipeline(
            request_id=request_id,
            mapping=request.mapping,
            cleaning=cleaning,
            dedup=dedup,
            exact_index=exact,
            lsh=lsh,
            fingerprint_key=self.key,
            detect_language=self.detect_language,
        )
        rows = itertools.islice(self.rows(request), position, None)  # resume after checkpoint
        while chunk := list(itertools.islice(rows, self.settings.chunk_rows)):
            self._apply_chunk(request, pipeline, dedup, chunk, report)
        with Session(self.engine) as session:
            uow = UnitOfWork(session, self.runtime.service)
            complete_job(uow, self.runtime.artifacts, request, report)
            session.commit()
        self._kick_relay()
        log.info("ingest completed", extra={"request_id": request_id, **report.to_dict()})

    def _apply_chunk(
        self,
        request: IngestRequested,
        pipeline: Pipeline,
        dedup: DedupConfig,
        chunk: list[RawRow],
        report: Report,
    ) -> None:
        request_id = str(request.event_id)
        result = pipeline.process(chunk, report)
        with Session(self.engine) as session:
            job = session.get(store.IngestJob, request_id)
            assert job is not None
            uow = UnitOfWork(session, self.runtime.service)
            store.save_chunk(session, request.dataset, request_id, result, dedup)
            size = self.settings.batch_records
            for start in range(0, len(result.kept), size):
                batch = result.kept[start : start + size]
                uow.emit(self._batch_event(request, job.batch_index, batch, report.read))
                job.batch_index += 1
                report.batches += 1
            topic = progress_topic()
            if topic is not None:
                uow.emit(
                    request.caused(
                        IngestProgressed,
                        event_id=batch_event_id(request_id, f"progress-{job.position}"),
                        dataset=request.dataset,
                        request_id=request.event_id,
                        read=report.read,
                        emitted=report.emitted,
                        source=chunk[-1].source,
                    ),
                    topic=topic,
                )
            job.position += len(chunk)
            job.report = report.to_dict()
            job.status = "running"
            job.updated_at = datetime.now(UTC)
            session.add(job)
            session.commit()
        self._kick_relay()

    def _batch_event(
        self, request: IngestRequested, index: int, batch: list[Record], read: int
    ) -> RecordsIngested:
        fields: dict[str, Any] = {"records": batch}
        body = "".join(r.model_dump_json() + "\n" for r in batch).encode()
        if len(body) > self.settings.claim_bytes:
            # raw text: the transit store, which anonymization empties once it has read it
            claim: ClaimCheck = self.runtime.transit.put_bytes(body, "application/jsonl")
            fields = {"records": [], "claim": claim}
        return request.caused(  # type: ignore[no-any-return]
            RecordsIngested,
            event_id=batch_event_id(str(request.event_id), f"batch-{index}"),
            dataset=request.dataset,
            request_id=request.event_id,
            batch_index=index,
            count=len(batch),
            read_so_far=read,
            **fields,
        )

    def fail_job(self, request_id: str, reason: str) -> None:
        with Session(self.engine) as session:
            job = session.get(store.IngestJob, request_id)
            assert job is not None
            request = IngestRequested.model_validate_json(job.request_json)
            report = Report.from_dict(job.report or {})
            uow = UnitOfWork(session, self.runtime.service)
            complete_job(uow, self.runtime.artifacts, request, report, failed=reason)
            session.commit()
        self._kick_relay()
