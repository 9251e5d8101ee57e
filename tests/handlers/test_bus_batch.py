"""The EventBus batch path: one transaction per fetched batch, still one effect per event
and per-key order; a failing event falls back to one transaction per event."""

from __future__ import annotations

import pytest
from faststream.kafka import TestKafkaBroker
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from shared.bus import InboxEntry
from shared.events import AuditRecorded
from shared.topics import Topic
from tests.handlers.test_bus import Harness, audit

pytestmark = pytest.mark.handlers


async def publish_batch(broker: TestKafkaBroker, events: list[AuditRecorded]) -> None:
    await broker.publish_batch(*(e.to_bytes() for e in events), topic=Topic.AUDIT_RECORDED.value)


async def test_a_batch_applies_each_event_once_under_redelivery(engine: Engine) -> None:
    h = Harness(engine)
    events = [audit(target=f"e{i}") for i in range(6)]
    async with TestKafkaBroker(h.broker) as broker:
        await publish_batch(broker, events[:3])
        await publish_batch(broker, events[1:5])  # a redelivery overlapping the first batch
        await publish_batch(broker, [events[5], events[5], events[0]])  # twice in one batch
        await h.bus.relay.drain()  # type: ignore[union-attr]
    assert sorted(h.applied()) == [f"e{i}" for i in range(6)]
    assert sorted(a["summary"] for a in h.alerts) == [f"e{i}" for i in range(6)]
    assert h.calls == 6
    with Session(engine) as session:
        assert len(session.exec(select(InboxEntry)).all()) == 6


async def test_a_batch_keeps_the_order_of_its_events(engine: Engine) -> None:
    h = Harness(engine)
    events = [audit(target=f"{i:03d}") for i in range(50)]
    async with TestKafkaBroker(h.broker) as broker:
        await publish_batch(broker, events)
        await h.bus.relay.drain()  # type: ignore[union-attr]
    assert h.applied() == [e.target for e in events]  # insertion order = handling order
    assert [a["summary"] for a in h.alerts] == [e.target for e in events]


async def test_a_failing_event_costs_only_itself(engine: Engine) -> None:
    h = Harness(engine)
    batch = [audit(target="a"), audit("fail", "bad"), audit(target="b")]
    async with TestKafkaBroker(h.broker) as broker:
        await publish_batch(broker, batch)
        await h.bus.relay.drain()  # type: ignore[union-attr]
    # the batch transaction rolled back; each event was then applied on its own
    assert h.applied() == ["a", "b"]
    assert h.calls == 2 + 1 + 3 + 1  # batch (a, bad) -> a, bad x 3 attempts, b
    assert [a["summary"] for a in h.alerts] == ["a", "b"]
    assert len(h.dead) == 1
    assert h.dead[0][1]["x-llmops-dlq-reason"] == "handler-failed"
    assert h.dead[0][0] == batch[1].to_bytes()


async def test_undecodable_bytes_in_a_batch_go_to_the_dlq_alone(engine: Engine) -> None:
    h = Harness(engine)
    async with TestKafkaBroker(h.broker) as broker:
        await broker.publish_batch(
            audit(target="x").to_bytes(),
            b"\x00 not json",
            audit(target="y").to_bytes(),
            topic=Topic.AUDIT_RECORDED.value,
        )
    assert h.applied() == ["x", "y"]
    assert [(body, headers["x-llmops-dlq-reason"]) for body, headers in h.dead] == [
        (b"\x00 not json", "undecodable")
    ]
