"""Thin handlers: store the request as a job; answer erasures."""

from __future__ import annotations

from collections.abc import Callable

from services.ingestion import erasure
from services.ingestion.ports import ErasureStore, JobStore
from shared.bus import EventBus, UnitOfWork
from shared.events import ErasureCompleted, IngestRequested
from shared.topics import Topic


def register(
    bus: EventBus,
    group: str,
    *,
    jobs: JobStore,
    erasures: ErasureStore,
    on_job_stored: Callable[[], None],
) -> None:
    async def on_ingest_requested(event: IngestRequested, uow: UnitOfWork) -> None:
        jobs.add(uow, event)
        on_job_stored()

    async def on_erasure_completed(event: ErasureCompleted, uow: UnitOfWork) -> None:
        reply = erasure.answer(erasures, uow, event)
        if reply is not None:
            uow.emit(reply)

    # One group per topic: each group has a single member, so no rebalance couples them.
    bus.subscribe(Topic.INGEST_REQUESTED, on_ingest_requested, group=group)
    bus.subscribe(Topic.ERASURE_COMPLETED, on_erasure_completed, group=f"{group}-erasure")
