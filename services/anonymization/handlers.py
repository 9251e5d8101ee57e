"""Thin handlers: typed event in, one service call, typed events out (through the outbox)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from opentelemetry import metrics
from sqlalchemy import event as sa_event
from sqlmodel import Session

from services.anonymization.ports import Vault
from services.anonymization.service import AnonymizationService
from shared.bus import UnitOfWork
from shared.events import (
    DatasetVersioned,
    ErasureRequested,
    FeedbackReceived,
    InferenceCompleted,
    ModelTrained,
    RecordsAnonymized,
    RecordsIngested,
)
from shared.runtime import Runtime
from shared.topics import Topic

VaultFactory = Callable[[Session], Vault]

_entities = metrics.get_meter("llmops.anonymization").create_counter(
    "llmops_pii_entities", description="PII entities replaced, by entity type and source."
)


def _count(event: RecordsAnonymized, source: str) -> RecordsAnonymized:
    for entity_type, count in event.entity_counts.items():
        _entities.add(count, {"entity_type": entity_type, "source": source})
    return event


def register(
    runtime: Runtime, service: AnonymizationService, vault_for: VaultFactory, group: str
) -> None:
    async def on_records_ingested(event: RecordsIngested, uow: UnitOfWork) -> None:
        vault = vault_for(uow.session)
        out = await asyncio.to_thread(service.on_records_ingested, event, vault)
        uow.emit(_count(out, "ingest"))
        # the raw batch leaves the transit store only once the anonymized one is committed
        sa_event.listen(uow.session, "after_commit", lambda _s: service.consumed(event), once=True)

    async def on_inference_completed(event: InferenceCompleted, uow: UnitOfWork) -> None:
        vault = vault_for(uow.session)
        out = await asyncio.to_thread(service.on_inference_completed, event, vault)
        uow.emit(_count(out, "inference"))

    async def on_feedback_received(event: FeedbackReceived, uow: UnitOfWork) -> None:
        vault = vault_for(uow.session)
        out = await asyncio.to_thread(service.on_feedback_received, event, vault)
        uow.emit(_count(out, "feedback"))

    async def on_erasure_requested(event: ErasureRequested, uow: UnitOfWork) -> None:
        # off the event loop like the other handlers: the admin API shares this loop
        vault = vault_for(uow.session)
        for answer in await asyncio.to_thread(service.on_erasure_requested, event, vault):
            uow.emit(answer)

    async def on_dataset_versioned(event: DatasetVersioned, uow: UnitOfWork) -> None:
        await asyncio.to_thread(service.on_dataset_versioned, event, vault_for(uow.session))

    async def on_model_trained(event: ModelTrained, uow: UnitOfWork) -> None:
        await asyncio.to_thread(service.on_model_trained, event, vault_for(uow.session))

    bus = runtime.bus
    bus.subscribe(Topic.RECORDS_INGESTED, on_records_ingested, group=group)
    bus.subscribe(Topic.INFERENCE_COMPLETED, on_inference_completed, group=group)
    bus.subscribe(Topic.FEEDBACK_RECEIVED, on_feedback_received, group=group)
    bus.subscribe(Topic.ERASURE_REQUESTED, on_erasure_requested, group=group)
    bus.subscribe(Topic.DATASET_VERSIONED, on_dataset_versioned, group=group)
    bus.subscribe(Topic.MODEL_TRAINED, on_model_trained, group=group)
