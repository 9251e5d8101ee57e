"""Thin handlers: typed event in, one service call, typed events out (through the outbox)."""

from __future__ import annotations

import asyncio

from services.monitoring import lifecycle
from services.monitoring.adapters.store import SqlRepository
from services.monitoring.service import MonitoringService
from shared.bus import UnitOfWork
from shared.events import (
    DatasetVersioned,
    ModelEvaluated,
    ModelPromoted,
    ModelRolledBack,
    ModelTrained,
    RecordsAnonymized,
    RecordsLabeled,
    TrainingProgressed,
    TrainingRequested,
    WorkerHeartbeat,
)
from shared.runtime import Runtime
from shared.topics import Topic


def register(runtime: Runtime, service: MonitoringService, group: str) -> None:
    async def on_records_anonymized(event: RecordsAnonymized, uow: UnitOfWork) -> None:
        repo = SqlRepository(uow.session)
        for out in await asyncio.to_thread(service.on_records_anonymized, event, repo):
            uow.emit(out)

    async def on_records_labeled(event: RecordsLabeled, uow: UnitOfWork) -> None:
        service.on_records_labeled(event, SqlRepository(uow.session))

    async def on_dataset_versioned(event: DatasetVersioned, uow: UnitOfWork) -> None:
        lifecycle.on_dataset_versioned(event, SqlRepository(uow.session))

    async def on_training_requested(event: TrainingRequested, uow: UnitOfWork) -> None:
        lifecycle.on_training_requested(event, SqlRepository(uow.session))

    async def on_training_progressed(event: TrainingProgressed, uow: UnitOfWork) -> None:
        lifecycle.on_training_progressed(event, SqlRepository(uow.session))

    async def on_model_trained(event: ModelTrained, uow: UnitOfWork) -> None:
        lifecycle.on_model_trained(event, SqlRepository(uow.session))

    async def on_model_evaluated(event: ModelEvaluated, uow: UnitOfWork) -> None:
        lifecycle.on_model_evaluated(event, SqlRepository(uow.session))

    async def on_model_promoted(event: ModelPromoted, uow: UnitOfWork) -> None:
        lifecycle.on_model_promoted(event, SqlRepository(uow.session))

    async def on_model_rolled_back(event: ModelRolledBack, uow: UnitOfWork) -> None:
        lifecycle.on_model_rolled_back(event, SqlRepository(uow.session))

    async def on_worker_heartbeat(event: WorkerHeartbeat, uow: UnitOfWork) -> None:
        service.workers[event.worker_id] = lifecycle.heartbeat_view(event)

    bus = runtime.bus
    bus.subscribe(Topic.RECORDS_ANONYMIZED, on_records_anonymized, group=f"{group}.records")
    bus.subscribe(Topic.RECORDS_LABELED, on_records_labeled, group=f"{group}.labels")
    bus.subscribe(Topic.DATASET_VERSIONED, on_dataset_versioned, group=f"{group}.datasets")
    bus.subscribe(Topic.TRAINING_REQUESTED, on_training_requested, group=f"{group}.requests")
    bus.subscribe(Topic.TRAINING_PROGRESSED, on_training_progressed, group=f"{group}.progress")
    bus.subscribe(Topic.MODEL_TRAINED, on_model_trained, group=f"{group}.trained")
    bus.subscribe(Topic.MODEL_EVALUATED, on_model_evaluated, group=f"{group}.evaluated")
    bus.subscribe(Topic.MODEL_PROMOTED, on_model_promoted, group=f"{group}.promoted")
    bus.subscribe(Topic.MODEL_ROLLED_BACK, on_model_rolled_back, group=f"{group}.rolled-back")
    # heartbeats are liveness, not state: no inbox row per beat, and only new ones matter
    bus.subscribe(
        Topic.WORKER_HEARTBEAT,
        on_worker_heartbeat,
        group=f"{group}.heartbeats",
        idempotent=False,
        auto_offset_reset="latest",
    )
