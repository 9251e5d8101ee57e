"""Thin handlers: store requests as runs, keep the catalogue of versions, apply policies."""

from __future__ import annotations

from collections.abc import Callable

from services.training import policies
from services.training.adapters.store import SeenVersion, TrainingRun
from services.training.config import TrainingSettings
from shared.bus import EventBus, UnitOfWork
from shared.events import DatasetVersioned, TrainingRequested
from shared.topics import Topic


def queue_run(uow: UnitOfWork, request: TrainingRequested) -> None:
    if uow.session.get(TrainingRun, str(request.event_id)) is None:
        uow.session.add(
            TrainingRun(
                run_id=str(request.event_id),
                model_name=request.model_name,
                dataset=request.dataset,
                request_json=request.model_dump_json(),
            )
        )


def register(bus: EventBus, settings: TrainingSettings, on_run_stored: Callable[[], None]) -> None:
    group = settings.consumer_group

    async def on_training_requested(event: TrainingRequested, uow: UnitOfWork) -> None:
        if event.set_policy:
            policies.store_policy(uow.session, event)
            return
        queue_run(uow, event)
        on_run_stored()

    async def on_dataset_versioned(event: DatasetVersioned, uow: UnitOfWork) -> None:
        uow.session.merge(
            SeenVersion(
                dataset=event.dataset,
                version=event.version,
                labeled=event.labeled,
                records=event.records,
                manifest_json=event.model_dump_json(),
            )
        )
        request = policies.auto_request(uow.session, settings, event)
        if request is not None:
            queue_run(uow, request)
            on_run_stored()

    bus.subscribe(Topic.TRAINING_REQUESTED, on_training_requested, group=group)
    bus.subscribe(Topic.DATASET_VERSIONED, on_dataset_versioned, group=f"{group}-versions")
