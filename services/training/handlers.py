"""Thin handlers: store requests as runs, keep the catalogue of versions, apply policies."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from sqlmodel import select

from services.training import policies
from services.training.adapters.store import SeenVersion, TrainingRun
from services.training.config import TrainingSettings
from shared.bus import EventBus, UnitOfWork
from shared.events import AuditRecorded, DatasetVersioned, ErasureCompleted, TrainingRequested
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


def retrain_after_erasure(uow: UnitOfWork, event: ErasureCompleted) -> list[TrainingRequested]:
    """New runs for the models trained on an erased subject's records, without those records.

    The anonymization service answers with the models whose dataset versions held the
    subject (its lineage); each is retrained from its own request (same dataset version,
    base, hyperparameters), the erased records left out. The new run's id is derived from the
    erasure and the model, so a redelivered answer queues nothing twice.
    """
    if not (event.retrain and event.service == "anonymization" and event.model_versions):
        return []
    requests = []
    for ref in event.model_versions:
        name, _, version = ref.partition("@")
        run = uow.session.exec(
            select(TrainingRun).where(
                TrainingRun.model_name == name, TrainingRun.model_version == version
            )
        ).first()
        if run is None:  # trained elsewhere (or before this database): nothing to repeat
            uow.emit(
                event.caused(
                    AuditRecorded,
                    action="training.retrain_after_erasure",
                    actor="training",
                    allowed=False,
                    target=f"model:{ref}",
                    details={"reason": "no training run of this version here"},
                )
            )
            continue
        original = TrainingRequested.model_validate_json(run.request_json)
        request = event.caused(
            TrainingRequested,
            event_id=uuid.uuid5(uuid.NAMESPACE_URL, f"erasure:{event.request_id}:{ref}"),
            **original.model_dump(
                include={
                    "model_name",
                    "dataset",
                    "base_model",
                    "hyperparameters",
                    "search_trials",
                    "task",
                    "lora",
                    "search_sampler",
                    "search_space",
                }
            ),
            reason="erasure",
            dataset_version=(run.result or {}).get("dataset_version", original.dataset_version),
            exclude_records=sorted({*original.exclude_records, *event.records}),
        )
        queue_run(uow, request)
        uow.emit(
            event.caused(
                AuditRecorded,
                action="training.retrain_after_erasure",
                actor="training",
                allowed=True,
                target=f"model:{ref}",
                details={"run_id": str(request.event_id), "excluded": len(event.records)},
            )
        )
        requests.append(request)
    return requests


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

    async def on_erasure_completed(event: ErasureCompleted, uow: UnitOfWork) -> None:
        if retrain_after_erasure(uow, event):
            on_run_stored()

    bus.subscribe(Topic.TRAINING_REQUESTED, on_training_requested, group=group)
    bus.subscribe(Topic.ERASURE_COMPLETED, on_erasure_completed, group=f"{group}-erasures")
    bus.subscribe(Topic.DATASET_VERSIONED, on_dataset_versioned, group=f"{group}-versions")
