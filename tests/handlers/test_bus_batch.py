"""The EventBus batch path: one transaction per fetched batch, still one effect per event
and per-key order; a failing event falls back to one transaction per event."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from aiokafka.structs import ConsumerRecord
from faststream.kafka import TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage
from sqlalchemy import insert
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from shared.bus import EventBus, InboxEntry, Message, OutboxEntry, make_broker
from shared.bus.store import UnitOfWork, insert_rows, outbox_row
from shared.events import AlertRaised, AuditRecorded
from shared.settings import ServiceSettings
from shared.topics import Topic
from tests.handlers.test_bus import Harness, audit
from tests.support.echo_service import Applied

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


# -- crashes: the batch handed to the bus again, as the broker redelivers it -------------
GROUP = "echo.audit.recorded"


class Direct:
    def __init__(self, engine: Engine) -> None:
        self.broker = make_broker(ServiceSettings(), client_id="test")
        self.bus = EventBus(self.broker, engine, service="echo", attempts=2, backoff_s=0.001)
        self.engine = engine
        self.calls: list[str] = []
        self.alerts: list[dict[str, Any]] = []

        async def on_audit_recorded(event: AuditRecorded, uow: UnitOfWork) -> None:
            self.calls.append(event.target)
            uow.session.add(Applied(event_id=str(event.event_id), target=event.target))
            uow.emit(event.caused(AlertRaised, name="echo", summary=event.target))

        self.handler = on_audit_recorded

        @self.broker.subscriber(Topic.ALERT_RAISED.value)
        async def alerts(message: KafkaMessage) -> None:
            self.alerts.append(json.loads(message.body))

    async def deliver(self, events: list[AuditRecorded | bytes], first_offset: int = 0) -> None:
        records = [
            ConsumerRecord(
                topic=Topic.AUDIT_RECORDED.value,
                partition=0,
                offset=first_offset + i,
                timestamp=0,
                timestamp_type=0,
                key=b"k",
                value=e if isinstance(e, bytes) else e.to_bytes(),
                checksum=None,
                serialized_key_size=1,
                serialized_value_size=0,
                headers=(),
            )
            for i, e in enumerate(events)
        ]
        await self.bus._consume_batch(
            Topic.AUDIT_RECORDED, GROUP, self.handler, records, idempotent=True
        )

    def applied(self) -> list[str]:
        with Session(self.engine) as session:
            return [r.target for r in session.exec(select(Applied).order_by(col(Applied.id)))]

    def outbox(self) -> list[str]:
        with Session(self.engine) as session:
            rows = session.exec(select(OutboxEntry).order_by(col(OutboxEntry.id))).all()
        return [json.loads(r.value)["summary"] for r in rows]


async def test_a_batch_redelivered_after_a_crash_before_the_offset_commit_applies_once(
    engine: Engine,
) -> None:
    """The transaction committed, the process died before the offsets did: the broker
    hands the same batch (and more) again; the inbox skips what was applied."""
    h = Direct(engine)
    first = [audit(target=f"a{i}") for i in range(10)]
    more = [audit(target=f"b{i}") for i in range(5)]
    async with TestKafkaBroker(h.broker):
        await h.deliver(first)
        await h.deliver([*first, *more])  # redelivery, plus what came after it
        await h.deliver([more[2], more[2]])  # and a duplicate within one batch
        assert await h.bus.relay.drain() == 15  # type: ignore[union-attr]
    expected = [e.target for e in [*first, *more]]
    assert h.applied() == expected
    assert [a["summary"] for a in h.alerts] == expected  # one follow-up per event
    assert h.calls == expected  # the handler never ran twice for an event


async def test_a_batch_whose_commit_failed_is_applied_whole_on_redelivery(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash inside the batch's transaction (here: its commit fails) leaves nothing:
    no state, no inbox row, no outbox row; the redelivered batch applies every event."""
    h = Direct(engine)
    batch = [audit(target=f"c{i}") for i in range(8)]

    def crash(_self: Session) -> None:
        raise SystemExit("killed before the commit")

    with monkeypatch.context() as patch:
        patch.setattr(Session, "commit", crash)
        with pytest.raises(SystemExit):
            await h.deliver(batch)
    assert h.applied() == []
    assert h.outbox() == []
    async with TestKafkaBroker(h.broker):
        await h.deliver(batch)
        assert await h.bus.relay.drain() == 8  # type: ignore[union-attr]
    assert h.applied() == [e.target for e in batch]
    assert len(h.alerts) == 8


# -- the relay sending a batch's rows from memory (SQLite) ----------------------------------
async def test_a_batch_s_rows_are_sent_from_memory_once_and_deleted_later(engine: Engine) -> None:
    """On SQLite a batch's follow-ups go out before ``_consume_batch`` returns, without the
    relay reading them back; their rows are deleted with the next batch's transaction, and
    a drain neither sends them again nor leaves them. PostgreSQL: the relay's drain alone."""
    h = Direct(engine)
    relay = h.bus.relay
    assert relay is not None
    first = [audit(target=f"m{i}") for i in range(5)]
    second = [audit(target=f"n{i}") for i in range(3)]
    async with TestKafkaBroker(h.broker):
        assert await relay.drain() == 0  # what the bus' start does: the table is known
        await h.deliver(first)
        if not relay.from_memory:
            assert engine.dialect.name != "sqlite"
            assert h.alerts == []  # left to the relay's drain
            assert await relay.drain() == 5
            return
        assert [a["summary"] for a in h.alerts] == [e.target for e in first]
        assert h.outbox() == [e.target for e in first]  # sent, not deleted yet
        await h.deliver(second, first_offset=5)
        assert h.outbox() == [e.target for e in second]  # the first deleted with the second
        assert await relay.drain() == 0  # sent already: deleted, not sent again
        assert h.outbox() == []
    assert [a["summary"] for a in h.alerts] == [e.target for e in [*first, *second]]


async def test_rows_of_another_writer_go_out_before_a_later_batch_s(engine: Engine) -> None:
    """Rows committed without a hand-over (a unit of work, which kicks the relay) may be
    older than a batch's: the batch's rows are then left to the drain, which sends all of
    them in commit order, each once."""
    h = Direct(engine)
    relay = h.bus.relay
    assert relay is not None
    batch = [audit(target=f"b{i}") for i in range(3)]
    async with TestKafkaBroker(h.broker):
        await relay.drain()
        with h.bus.unit_of_work() as uow:
            uow.emit(AlertRaised(name="echo", summary="older"))
        await h.deliver(batch)
        assert h.alerts == []  # not before the older row
        assert await relay.drain() == 4
        assert await relay.drain() == 0
        await relay._send_ready()  # the hand-over the drain sent: not sent again
    assert [a["summary"] for a in h.alerts] == ["older", *(e.target for e in batch)]
    assert h.outbox() == []


async def test_a_failed_send_from_memory_leaves_the_rows_to_the_drain(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The batch is committed; its send fails: ``_consume_batch`` does not fail (no
    redelivery, no retry one by one), the rows stay and the relay's drain sends them."""
    h = Direct(engine)
    relay = h.bus.relay
    assert relay is not None
    batch = [audit(target=f"f{i}") for i in range(4)]

    async def broken(_records: Any) -> None:
        raise ConnectionError("the broker is away")

    async with TestKafkaBroker(h.broker):
        await relay.drain()
        with monkeypatch.context() as patch:
            patch.setattr(relay, "_publish", broken)
            await h.deliver(batch)
        assert h.calls == [e.target for e in batch]  # applied once, in one batch
        assert h.alerts == []
        assert h.outbox() == [e.target for e in batch]
        assert await relay.drain() == 4
    assert [a["summary"] for a in h.alerts] == [e.target for e in batch]
    assert h.outbox() == []


# -- the rows of a batch: insert_rows' prepared statement ---------------------------------
def test_insert_rows_stores_what_core_stores(engine: Engine) -> None:
    """The prepared INSERT (compiled once, the rows through each column's bind processor)
    stores the values Core's insert does: JSON, bytes, None, one timestamp shared by rows."""
    now = datetime.now(UTC)
    event = audit(target="row")
    rows = [
        {**outbox_row(event, Topic.AUDIT_RECORDED, None, now), "event_id": f"id-{i}", "key": key}
        for i, key in enumerate(["k", None, "k"])
    ]
    inbox = [
        {"consumer": "g", "event_id": f"id-{i}", "event_type": "t", "handled_at": now}
        for i in range(3)
    ]
    with Session(engine) as session:
        insert_rows(session, OutboxEntry, rows[:2])
        session.execute(insert(OutboxEntry.__table__), rows[2:])  # type: ignore[attr-defined]
        insert_rows(session, InboxEntry, inbox)
        session.commit()
    with Session(engine) as session:
        stored = session.exec(select(OutboxEntry).order_by(col(OutboxEntry.id))).all()
        entries = session.exec(select(InboxEntry).order_by(col(InboxEntry.event_id))).all()
    prepared, core = stored[:2], stored[2]
    for entry in prepared:
        assert entry.value == core.value == event.to_bytes()
        assert entry.headers == core.headers == rows[0]["headers"]
        assert entry.created_at == core.created_at
        assert entry.topic == core.topic
    assert [e.key for e in stored] == ["k", None, "k"]
    assert [(e.event_id, e.handled_at) for e in entries] == [(f"id-{i}", now) for i in range(3)]


def test_insert_rows_lets_core_fill_a_python_default(engine: Engine) -> None:
    """Rows that leave out a column with a Python-side default go through Core, which
    fills it (the prepared statement would store NULL)."""
    with Session(engine) as session:
        insert_rows(session, InboxEntry, [{"consumer": "g", "event_id": "e", "event_type": "t"}])
        session.commit()
    with Session(engine) as session:
        entry = session.exec(select(InboxEntry)).one()
    assert entry.handled_at is not None


# -- FastStream's decoding: skipped for a handler that takes no body ----------------------
async def test_a_handler_without_a_body_gets_the_records_undecoded() -> None:
    broker = make_broker(ServiceSettings(), client_id="test")
    bodies: list[Any] = []
    decoded: list[Any] = []

    @broker.subscriber("raw", batch=True)
    async def raw(message: Message) -> None:
        bodies.append(await message.decode())

    @broker.subscriber("parsed", batch=True)
    async def parsed(body: list[dict[str, int]]) -> None:
        decoded.append(body)

    async with TestKafkaBroker(broker) as test_broker:
        await test_broker.publish_batch(b'{"a": 1}', b'{"a": 2}', topic="raw")
        await test_broker.publish_batch(b'{"a": 1}', b'{"a": 2}', topic="parsed")
    assert bodies == [[b'{"a": 1}', b'{"a": 2}']]  # no JSON parse nobody asked for
    assert decoded == [[{"a": 1}, {"a": 2}]]  # a handler that takes the body gets it parsed
