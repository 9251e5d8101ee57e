"""Thin handlers: queue trained versions, remember dataset versions, keep aliases true."""

from __future__ import annotations

from collections.abc import Callable

from services.evaluation.adapters.store import DatasetVersionRow, SqlRegistryStore
from services.evaluation.registry import CHAMPION, Registry
from shared.bus import EventBus, UnitOfWork
from shared.events import (
    DatasetVersioned,
    ModelPromoted,
    ModelRolledBack,
    ModelTrained,
    WorkerHeartbeat,
)
from shared.topics import Topic


def register(bus: EventBus, group: str, kick: Callable[[], None]) -> None:
    champions_seen: set[str] = set()

    async def on_model_trained(event: ModelTrained, uow: UnitOfWork) -> None:
        Registry(SqlRegistryStore(uow.session), uow.emit, bus.service).register_trained(event)
        kick()

    async def on_dataset_versioned(event: DatasetVersioned, uow: UnitOfWork) -> None:
        store = SqlRegistryStore(uow.session)
        if event.labeled and store.manifest(event.dataset, event.version) is None:
            uow.session.add(
                DatasetVersionRow(
                    dataset=event.dataset,
                    version=event.version,
                    manifest_json=event.manifest.model_dump_json(),
                )
            )
        kick()

    async def on_model_promoted(event: ModelPromoted, uow: UnitOfWork) -> None:
        if event.producer != bus.service:  # ours are recorded when made
            Registry(SqlRegistryStore(uow.session), uow.emit, bus.service).observe_external(event)

    async def on_model_rolled_back(event: ModelRolledBack, uow: UnitOfWork) -> None:
        if event.producer != bus.service:
            Registry(SqlRegistryStore(uow.session), uow.emit, bus.service).observe_external(event)

    async def on_worker_heartbeat(event: WorkerHeartbeat, uow: UnitOfWork) -> None:
        for served in event.models:
            if served.alias == CHAMPION and served.name not in champions_seen:
                registry = Registry(SqlRegistryStore(uow.session), uow.emit, bus.service)
                registry.observe_served(served.name, served.version)
                champions_seen.add(served.name)

    bus.subscribe(Topic.MODEL_TRAINED, on_model_trained, group=f"{group}-trained")
    bus.subscribe(Topic.DATASET_VERSIONED, on_dataset_versioned, group=f"{group}-datasets")
    bus.subscribe(Topic.MODEL_PROMOTED, on_model_promoted, group=f"{group}-promotions")
    bus.subscribe(Topic.MODEL_ROLLED_BACK, on_model_rolled_back, group=f"{group}-rollbacks")
    # heartbeats are frequent and carry no command: no inbox row for each
    bus.subscribe(
        Topic.WORKER_HEARTBEAT, on_worker_heartbeat, group=f"{group}-heartbeats", idempotent=False
    )
