"""``shared.bus.Message`` hands a handler the raw record without a worker-thread hop."""

from __future__ import annotations

import anyio.to_thread
import pytest
from faststream.kafka import KafkaBroker, TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage

from shared.bus.message import Message

pytestmark = pytest.mark.unit


async def _hops_and_records(
    annotation: object, monkeypatch: pytest.MonkeyPatch
) -> tuple[int, list]:
    hops = 0
    run_sync = anyio.to_thread.run_sync

    async def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
        nonlocal hops
        hops += 1
        return await run_sync(*args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", counting)
    broker = KafkaBroker()
    seen: list = []

    async def handler(message: annotation) -> None:  # type: ignore[valid-type]
        seen.append((message.raw_message.key, message.headers.get("h")))

    broker.subscriber("t", group_id="g")(handler)
    async with TestKafkaBroker(broker) as test_broker:
        for i in range(5):
            await test_broker.publish(b"x", "t", key=str(i).encode(), headers={"h": str(i)})
    return hops, seen


async def test_message_reaches_the_handler_on_the_event_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hops, seen = await _hops_and_records(Message, monkeypatch)
    assert seen == [(str(i).encode(), str(i)) for i in range(5)]
    assert hops == 0


async def test_faststreams_own_annotation_hops_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    """The control: if FastStream stops hopping, ``Message`` is no longer needed."""
    hops, seen = await _hops_and_records(KafkaMessage, monkeypatch)
    assert len(seen) == 5
    assert hops >= 5
