"""Thin handlers: records become tasks, ingest requests get versions, erasures answered,
signed project commands applied, the model's replies become suggestions."""

from __future__ import annotations

from collections.abc import Callable

from faststream.kafka import KafkaBroker
from faststream.middlewares import AckPolicy

from services.labeling import erasure, projects
from services.labeling.curator import Curator
from services.labeling.suggester import ModelSuggester
from shared.bus import EventBus, Message, UnitOfWork
from shared.events import (
    ErasureCompleted,
    IngestCompleted,
    IngestRequested,
    LabelingProjectRequested,
    RecordsAnonymized,
)
from shared.topics import Topic


def register(
    bus: EventBus,
    group: str,
    curator: Curator,
    *,
    on_tasks: Callable[[], None] | None = None,
) -> None:
    async def on_records_anonymized(event: RecordsAnonymized, uow: UnitOfWork) -> None:
        curator.receive(uow, event)
        if on_tasks is not None:
            on_tasks()  # new tasks may want a model suggestion (runs after the commit)

    async def on_ingest_requested(event: IngestRequested, uow: UnitOfWork) -> None:
        curator.on_ingest_requested(uow, event)

    async def on_ingest_completed(event: IngestCompleted, uow: UnitOfWork) -> None:
        curator.on_ingest_completed(uow, event)

    async def on_project_requested(event: LabelingProjectRequested, uow: UnitOfWork) -> None:
        projects.apply(curator.labeling, uow, event)  # verified by the bus before this
        if on_tasks is not None:
            on_tasks()

    async def on_erasure_completed(event: ErasureCompleted, uow: UnitOfWork) -> None:
        reply = erasure.answer(uow.session, event, uow.producer)
        if reply is not None:
            uow.emit(reply)

    # One group per topic: each has a single member, so no rebalance couples them. The
    # handlers run on the event loop one at a time, so the "whichever comes last cuts the
    # version" checks of the curator never interleave within the process.
    bus.subscribe(Topic.RECORDS_ANONYMIZED, on_records_anonymized, group=f"{group}-records")
    bus.subscribe(Topic.INGEST_REQUESTED, on_ingest_requested, group=f"{group}-ingest")
    bus.subscribe(Topic.INGEST_COMPLETED, on_ingest_completed, group=f"{group}-ingest-done")
    bus.subscribe(Topic.ERASURE_COMPLETED, on_erasure_completed, group=f"{group}-erasure")
    bus.subscribe(Topic.LABELING_PROJECT_REQUESTED, on_project_requested, group=f"{group}-projects")


def register_replies(
    broker: KafkaBroker, topic: str, suggester: ModelSuggester, *, fetch_max_wait_ms: int
) -> None:
    """This process' inference reply topic (no group: only this process reads it), from
    its start (10 minutes retained): no reply is missed while the consumer is still finding
    the end of the topic; replies to an earlier run's questions find no pending question
    (those are asked again at start) and change nothing."""

    async def on_inference_reply(message: Message) -> None:
        suggester.on_reply(message.body)

    broker.subscriber(
        topic,
        ack_policy=AckPolicy.ACK_FIRST,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=fetch_max_wait_ms,
    )(on_inference_reply)
