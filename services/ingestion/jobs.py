"""The job runner: turns stored ingest requests into batches, chunk by chunk, resumably.

A request is stored by its handler (with the inbox row). The runner, a background loop,
then reads its sources in a worker thread. Each chunk of rows commits in ONE transaction
of the job store: dedup index entries, lineage, the RecordsIngested batches (outbox,
deterministic event ids) and the job's checkpoint (position in the source stream,
counters). A process killed mid-request resumes at the last checkpoint: nothing is lost,
nothing is emitted twice. Several processes of the service share the job table: the store
leases each job to the process running it (``JobStore.next_job``), and a job whose process
died is taken over by another once its lease has run out. The runner depends on ports
only (``ports.JobStore``).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from services.ingestion.config import IngestionSettings
from services.ingestion.domain.cleaning import CleaningConfig
from services.ingestion.domain.dedup import DedupConfig
from services.ingestion.domain.pipeline import Pipeline, RawRow
from services.ingestion.policy import SourceDeniedError, SourcePolicy
from services.ingestion.ports import Job, JobStore, LanguageDetector, Outgoing, SourceReader
from shared.background import BackgroundLoop
from shared.claims import BlobWriter, pack
from shared.events import AuditRecorded
from shared.events.ingest import IngestProgressed, IngestRequested, Record, RecordsIngested
from shared.storage.lease import LeaseLostError
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
        jobs: JobStore,
        settings: IngestionSettings,
        *,
        reader: SourceReader,
        detect_language: LanguageDetector | None,
        fingerprint_key: bytes,
        transit: BlobWriter,
        on_committed: Callable[[], None] | None = None,
        policy: SourcePolicy | None = None,
    ) -> None:
        self.jobs = jobs
        self.settings = settings
        self.reader = reader
        self.policy = policy or settings.source_policy()  # what requests may make it read
        self.detect_language = detect_language
        self.key = fingerprint_key
        self.transit = transit  # raw text: anonymization empties it once it has read a batch
        self.on_committed = on_committed  # e.g. wake the outbox relay (called on the loop)
        # where versions used to collect raw records (before they were cut from anonymized
        # ones): whatever an older release left there is raw text, removed at start
        self.legacy_spool = Path(settings.data_dir) / "ingestion" / "spool"
        self.loop = BackgroundLoop(
            "ingest-runner", self._step, interval_s=settings.poll_s, retry_s=1.0, max_retry_s=5.0
        )
        self._main: asyncio.AbstractEventLoop | None = None
        self._failures: dict[str, int] = {}

    # -- lifecycle -------------------------------------------------------------------
    def kick(self) -> None:
        self.loop.kick()

    async def start(self) -> None:
        shutil.rmtree(self.legacy_spool, ignore_errors=True)
        self.settings.inbox.mkdir(parents=True, exist_ok=True)
        log.info("ingestion source policy", extra=self.policy.describe())
        self._main = asyncio.get_running_loop()
        await self.loop.start()

    async def stop(self) -> None:
        await self.loop.stop()

    def alive(self) -> bool:
        return self.loop.alive()

    async def _step(self) -> bool:
        """Run the next job, if any; True when one ran (look for the next at once)."""
        request_id = await asyncio.to_thread(self.jobs.next_job)
        if request_id is None:
            return False
        try:
            await asyncio.to_thread(self.run_job, request_id)
        except LeaseLostError:  # another process of the service works it now: not a failure
            log.warning(
                "ingest job taken over by another process", extra={"request_id": request_id}
            )
            return True
        except Exception:
            failures = self._failures[request_id] = self._failures.get(request_id, 0) + 1
            if failures >= MAX_ATTEMPTS:
                await asyncio.to_thread(self.fail_job, request_id, "internal error; see logs")
            raise  # logged by the loop, retried after a backoff
        return True

    def _committed(self) -> None:
        if self.on_committed is not None and self._main is not None:
            self._main.call_soon_threadsafe(self.on_committed)

    # -- the work (worker thread) ----------------------------------------------------
    def rows(self, request: IngestRequested) -> Iterator[RawRow]:
        for spec in request.sources:
            yield from self.reader(
                spec, max_line_bytes=self.settings.max_line_bytes, policy=self.policy
            )
        for index, fields in enumerate(request.records, 1):
            yield RawRow("inline", index, fields=fields)
        if not request.sources and not request.records:
            yield RawRow("request", None, error="no source and no inline record", file_level=True)

    def run_job(self, request_id: str) -> None:
        job = self.jobs.load(request_id)
        request = job.request
        log.info("ingest started", extra={"request_id": request_id, "position": job.position})
        try:
            cleaning, dedup = resolve_configs(self.settings, request.cleaning)
        except ValueError as exc:
            self.jobs.finish(job, failed=str(exc))
            self._committed()
            return
        try:
            for spec in request.sources:  # all of them, before a single row is read
                self.policy.check(spec.uri)
        except SourceDeniedError as exc:
            self._deny(job, exc)
            return
        exact, lsh = self.jobs.load_index(request.dataset, dedup)
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
        rows = itertools.islice(self.rows(request), job.position, None)  # resume at checkpoint
        try:
            while chunk := list(itertools.islice(rows, self.settings.chunk_rows)):
                self._apply_chunk(job, pipeline, dedup, chunk)
        except SourceDeniedError as exc:  # a file a directory or glob led to, out of bounds
            self._deny(job, exc)
            return
        self.jobs.finish(job)
        self._committed()
        log.info("ingest completed", extra={"request_id": request_id, **job.report.to_dict()})

    def _apply_chunk(
        self, job: Job, pipeline: Pipeline, dedup: DedupConfig, chunk: list[RawRow]
    ) -> None:
        request, report = job.request, job.report
        result = pipeline.process(chunk, report)
        events: list[Outgoing] = []
        size = self.settings.batch_records
        for start in range(0, len(result.kept), size):
            batch = result.kept[start : start + size]
            events.append((self._batch_event(request, job.batch_index, batch, report.read), None))
            job.batch_index += 1
            report.batches += 1
        topic = progress_topic()
        if topic is not None:
            progress = request.caused(
                IngestProgressed,
                event_id=batch_event_id(job.request_id, f"progress-{job.position}"),
                dataset=request.dataset,
                request_id=request.event_id,
                read=report.read,
                emitted=report.emitted,
                source=chunk[-1].source,
            )
            events.append((progress, topic))
        job.position += len(chunk)
        self.jobs.save_chunk(job, result, dedup, events)
        self._committed()

    def _batch_event(
        self, request: IngestRequested, index: int, batch: list[Record], read: int
    ) -> RecordsIngested:
        records, claim = pack(batch, self.transit, self.settings.claim_bytes)
        return request.caused(  # type: ignore[no-any-return]
            RecordsIngested,
            event_id=batch_event_id(str(request.event_id), f"batch-{index}"),
            dataset=request.dataset,
            request_id=request.event_id,
            batch_index=index,
            count=len(batch),
            read_so_far=read,
            records=records,
            claim=claim,
        )

    def _deny(self, job: Job, denied: SourceDeniedError) -> None:
        """Fail the job with the rule it broke, and audit the attempt (who, which source)."""
        request = job.request
        audit = request.caused(
            AuditRecorded,
            action="ingest.source_denied",
            actor=request.producer,
            allowed=False,
            target=f"dataset:{request.dataset}",
            details={"request_id": str(request.event_id), "source": denied.source},
        )
        self.jobs.finish(job, failed=str(denied), also=[(audit, None)])
        self._committed()
        log.warning(
            "ingest source denied",
            extra={"request_id": job.request_id, "source": denied.source, "actor": audit.actor},
        )

    def fail_job(self, request_id: str, reason: str) -> None:
        self.jobs.finish(self.jobs.load(request_id), failed=reason)
        self._committed()
