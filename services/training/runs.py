"""The run queue: stored requests become trained models, one at a time, in a worker thread.

A request is stored by its handler (with the inbox row); the runner picks the oldest
pending or running run, trains it in a thread (the event loop keeps serving health and
the bus), and commits ModelTrained with the run's completion. A process killed mid-run
finds the run still ``running`` at start and resumes it from its last checkpoint.

Several processes of the service share the run table: a run is leased to the process
training it (``shared.storage.lease``; renewed while it trains, every commit of the run
fenced), so it trains in one process at a time; a run whose process died is taken over by
another, from its last checkpoint, once the lease has run out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session

from services.training.adapters import store
from services.training.config import TrainingSettings
from services.training.training_job import JobOutcome, TrainingJob, failed_event, mark_failed
from shared.bus.store import UnitOfWork
from shared.events import Event, TrainingRequested
from shared.runtime import Runtime
from shared.storage.lease import LeaseLostError, Leases

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 3


class ServiceStoppingError(RuntimeError):
    """Raised in the training thread when the service shuts down."""


class RunQueue:
    def __init__(
        self, runtime: Runtime, settings: TrainingSettings, optuna_storage: Callable[[], Any]
    ) -> None:
        assert runtime.engine is not None
        self.runtime = runtime
        self.engine: Engine = runtime.engine
        self.settings = settings
        self.optuna_storage = optuna_storage
        self.root = Path(settings.data_dir) / "training"
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = threading.Event()
        self.leases = Leases(store.TrainingRun, ttl_s=settings.job_lease_s)

    def kick(self) -> None:
        self._wake.set()

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.create_task(self._run(), name="training-runner")

    async def stop(self) -> None:
        # the training thread cannot be cancelled: its next progress report raises, the run
        # stays `running` and resumes from its last checkpoint at the next start
        self._stopping.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def alive(self) -> bool:
        return self._task is not None and not self._task.done()

    async def _run(self) -> None:
        while True:
            run_id = await asyncio.to_thread(self._next)
            outcome = JobOutcome.WAIT
            if run_id is not None:
                try:
                    outcome = await asyncio.to_thread(self._work, run_id)
                except asyncio.CancelledError:
                    raise
                except LeaseLostError:  # another process trains it now: not a failure
                    log.warning(
                        "training run taken over by another process", extra={"run_id": run_id}
                    )
                    outcome = JobOutcome.WAIT
                except Exception:
                    log.exception("training run failed", extra={"run_id": run_id})
                    outcome = JobOutcome.WAIT
            if outcome is JobOutcome.WAIT:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=self.settings.poll_s)
                self._wake.clear()

    def _next(self) -> str | None:
        """The oldest run due that no other process holds, leased to this one."""
        with Session(self.engine) as session:
            now = datetime.now(UTC)
            due = []
            for run in store.unfinished_runs(session):
                waited = (now - run.updated_at.replace(tzinfo=UTC)).total_seconds()
                if run.status == "pending" and run.attempts and waited < self.settings.poll_s:
                    continue
                due.append(run.run_id)
        for run_id in due:
            if self.leases.claim(self.engine, {"run_id": run_id}):
                return run_id
        return None

    def _work(self, run_id: str) -> JobOutcome:
        """Train a leased run, renewing the lease meanwhile; a failure is counted (and
        reported) while the lease is still held, then the run is free again."""
        with self.leases.held(self.engine, {"run_id": run_id}):
            try:
                return self.run_once(run_id)
            except (LeaseLostError, ServiceStoppingError):
                raise
            except Exception as exc:
                log.exception("training run failed", extra={"run_id": run_id})
                self._count_failure(run_id, exc)
                return JobOutcome.WAIT

    # -- the worker thread ----------------------------------------------------------
    def emit(self, event: Event, update: Callable[[store.TrainingRun], None] | None = None) -> None:
        """Commit an event (and a change of the run) through the outbox, then wake the relay."""
        if self._stopping.is_set():
            raise ServiceStoppingError("the service is stopping; the run resumes at the next start")
        with Session(self.engine) as session:
            uow = UnitOfWork(session, self.runtime.service)
            uow.emit(event)
            if update is not None:
                run_id = str(event.run_id)  # type: ignore[attr-defined]
                run = session.get(store.TrainingRun, run_id)
                if run is not None:
                    update(run)
                    run.updated_at = datetime.now(UTC)
                    session.add(run)
                    session.flush()
                    self.leases.fence(session, {"run_id": run_id})  # still ours, or nothing
            session.commit()
        relay = self.runtime.bus.relay
        if relay is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(relay.kick)

    def run_once(self, run_id: str) -> JobOutcome:
        with Session(self.engine) as session:
            run = session.get(store.TrainingRun, run_id)
            assert run is not None
            request = TrainingRequested.model_validate_json(run.request_json)
            age = (datetime.now(UTC) - run.created_at.replace(tzinfo=UTC)).total_seconds()
        job = TrainingJob(
            run_id=uuid.UUID(run_id),
            request=request,
            settings=self.settings,
            engine=self.engine,
            artifacts=self.runtime.artifacts,
            work_dir=self.root / "runs" / run_id,
            bases_dir=self.root / "bases",
            optuna_storage=self.optuna_storage,
            emit=self.emit,
        )
        outcome = job.execute(version_wait_left=self.settings.version_wait_s - age)
        if outcome is JobOutcome.DONE and not self.settings.keep_checkpoints:
            for checkpoint in (self.root / "runs" / run_id).glob("trial-*/checkpoint-*"):
                shutil.rmtree(checkpoint, ignore_errors=True)
        return outcome

    def _count_failure(self, run_id: str, exc: Exception) -> None:
        with Session(self.engine) as session:
            run = session.get(store.TrainingRun, run_id)
            if run is None:
                return
            run.attempts += 1
            run.updated_at = datetime.now(UTC)
            session.add(run)
            session.commit()
            attempts = run.attempts
            request = TrainingRequested.model_validate_json(run.request_json)
        if attempts >= MAX_ATTEMPTS:
            reason = f"internal error after {attempts} attempts: {type(exc).__name__}: {exc}"
            self.emit(failed_event(request, uuid.UUID(run_id), reason), mark_failed(reason))
