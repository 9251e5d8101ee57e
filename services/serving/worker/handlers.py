"""Thin handlers: inference requests (shared group, many in flight) and model control
(a group per worker, so every worker applies every promotion)."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

from faststream.middlewares import AckPolicy

from services.serving.wire import CANCEL_TOPIC, FetchPace, cancelled_request
from services.serving.worker.adapters.state_store import snapshot_row
from services.serving.worker.config import WorkerSettings
from services.serving.worker.control import ModelControl
from services.serving.worker.inference import InferenceService
from shared.bus import Message, UnitOfWork
from shared.events import EventDecodeError, ModelPromoted, ModelRolledBack, decode
from shared.events.serving import InferenceRequested
from shared.runtime import Runtime
from shared.topics import Topic
from shared.wire import is_reply_topic

CONTROL_FETCH_WAIT_MS = 250  # promotions and rollbacks: rare, and a load takes seconds


class RequestPace:
    """Keeps the request consumer's fetch wait at the fast pace while requests come in or
    run, and at the idle pace once the worker has been quiet for a second (``FetchPace``)."""

    def __init__(self, pace: FetchPace, subscriber: Any, inference: InferenceService) -> None:
        self.pace = pace
        self.subscriber = subscriber
        self.inference = inference

    def busy(self) -> None:
        self.pace.busy()

    async def run(self, every_s: float = 0.25) -> None:
        while True:
            consumer = getattr(self.subscriber, "consumer", None)  # a new one after a restart
            if consumer is not None:
                self.pace.attach(consumer)
                self.pace.settle(active=bool(self.inference.running))
            await asyncio.sleep(every_s)


def register(
    runtime: Runtime,
    settings: WorkerSettings,
    *,
    worker_id: str,
    inference: InferenceService,
    control: ModelControl,
) -> RequestPace:
    """Subscribe the worker's handlers; returns the request consumer's pace (to run)."""
    bus = runtime.bus
    pace: RequestPace | None = None

    async def on_inference_requested(message: Message) -> None:
        if pace is not None:
            pace.busy()
        raw = message.raw_message
        if not await bus.admit(  # not idempotent: a replayed request is refused
            Topic.INFERENCE_REQUESTED, raw[0] if isinstance(raw, tuple) else raw, once=True
        ):
            return
        try:
            event = decode(message.body, expected=InferenceRequested)
        except EventDecodeError as exc:
            await bus.dead_letter(
                Topic.INFERENCE_REQUESTED, message, exc.reason, exc.detail, attempts=0
            )
            return
        assert isinstance(event, InferenceRequested)
        if not is_reply_topic(event.reply_to):  # never write a reply anywhere else
            detail = f"reply_to {event.reply_to[:200]!r} is not a gateway reply topic"
            await bus.dead_letter(
                Topic.INFERENCE_REQUESTED, message, "reply-to-not-allowed", detail, attempts=0
            )
            return
        await inference.handle(event)

    # Ack-first with a task pool: one consumer keeps up to max_in_flight requests generating
    # at once, so vLLM batches them continuously. A request lost in a crash ends in the
    # gateway's deadline (504), never in a stuck partition.
    requests = runtime.broker_for(Topic.INFERENCE_REQUESTED.value).subscriber(
        Topic.INFERENCE_REQUESTED.value,
        group_id=settings.request_group,
        ack_policy=AckPolicy.ACK_FIRST,
        max_workers=settings.max_in_flight,
        auto_offset_reset="latest",
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
    )
    requests(on_inference_requested)
    pace = RequestPace(
        FetchPace(settings.fetch_max_wait_ms, settings.idle_fetch_max_wait_ms),
        requests,
        inference,
    )

    async def on_inference_cancelled(message: Message) -> None:
        request_id = cancelled_request(message.body)
        if request_id is not None:
            await inference.cancel(request_id)

    # Every worker reads every cancel (no group), from now on: only live generations matter.
    # A cancel stops tokens nobody reads; 100 ms later is fine, and polling less costs less.
    runtime.broker_for(CANCEL_TOPIC).subscriber(
        CANCEL_TOPIC,
        ack_policy=AckPolicy.ACK_FIRST,
        auto_offset_reset="latest",
        fetch_max_wait_ms=max(settings.fetch_max_wait_ms, 100),
    )(on_inference_cancelled)

    def save(uow: UnitOfWork) -> None:
        uow.session.merge(snapshot_row(control.table.to_dict(), control.applied_until))

    async def on_model_promoted(event: ModelPromoted, uow: UnitOfWork) -> None:
        if await control.apply_promotion(event):
            save(uow)

    async def on_model_rolled_back(event: ModelRolledBack, uow: UnitOfWork) -> None:
        if await control.apply_rollback(event):
            save(uow)

    # Promotions are rare and a model load takes seconds: these consumers poll slowly and
    # one event at a time. At the requests' 10 ms wait (and the bus's batch loop, which wakes
    # every few ms) two idle control consumers cost the broker and the engine's event loop
    # more than the request consumer itself.
    slow: dict[str, Any] = {
        "group": f"serving-worker-{worker_id}",
        "batch": 1,
        "fetch_max_wait_ms": CONTROL_FETCH_WAIT_MS,
    }
    bus.subscribe(Topic.MODEL_PROMOTED, on_model_promoted, **slow)
    bus.subscribe(Topic.MODEL_ROLLED_BACK, on_model_rolled_back, **slow)
    return pace


def new_worker_id(settings: WorkerSettings) -> str:
    import os
    import socket

    return settings.id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def models_dir(settings: WorkerSettings) -> Path:
    return (settings.data_dir / "serving" / "models").resolve()
