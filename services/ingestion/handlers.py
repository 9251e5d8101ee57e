"""Thin handlers: store the request as a job; collect anonymized records; answer erasures."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from services.ingestion import erasure, versions
from services.ingestion.ports import ErasureStore, JobStore
from shared.bus import EventBus, UnitOfWork
from shared.events import ErasureCompleted, IngestRequested, RecordsAnonymized
from shared.storage import ArtifactStore
from shared.topics import Topic


def register(
    bus: EventBus,
    group: str,
    *,
    jobs: JobStore,
    erasures: ErasureStore,
    on_job_stored: Callable[[], None],
    artifacts: ArtifactStore,
) -> None:
    async def on_ingest_requested(event: IngestRequested, uow: UnitOfWork) -> None:
        jobs.add(uow, event)
        on_job_stored()

    async def on_erasure_completed(event: ErasureCompleted, uow: UnitOfWork) -> None:
        reply = erasure.answer(erasures, uow, event)
        if reply is not None:
            uow.emit(reply)

    async def on_records_anonymized(event: RecordsAnonymized, uow: UnitOfWork) -> None:
        await asyncio.to_thread(versions.on_records_anonymized, uow, artifacts, event)

    # One group per topic: each group has a single member, so no rebalance couples them.
    bus.subscribe(Topic.INGEST_REQUESTED, on_ingest_requested, group=group)
    bus.subscribe(Topic.ERASURE_COMPLETED, on_erasure_completed, group=f"{group}-erasure")
    bus.subscribe(Topic.RECORDS_ANONYMIZED, on_records_anonymized, group=f"{group}-versions")
