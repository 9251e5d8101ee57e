"""The EventBus delivery rules with FastStream's in-memory broker, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from faststream.kafka import TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from shared.bus import EventBus, OutboxEntry, dlq_claim, make_broker, resolve_dlq_value
from shared.bus.store import UnitOfWork
from shared.events import AlertRaised, AuditRecorded, FeedbackReceived
from shared.settings import ServiceSettings
from shared.storage.artifacts import ArtifactStore
from shared.topics import Topic
from tests.support.echo_service import Applied

pytestmark = pytest.mark.handlers


class Harness:
    def __init__(self, engine: Engine) -> None:
        self.broker = make_broker(ServiceSettings(), client_id="test")
        self.bus = EventBus(self.broker, engine, service="echo", attempts=3, backoff_s=0.001)
        self.engine = engine
        self.alerts: list[dict[str, Any]] = []
        self.dead: list[tuple[bytes, dict[str, str]]] = []
        self.calls = 0

        async def on_audit_recorded(event: AuditRecorded, uow: UnitOfWork) -> None:
            self.calls += 1
            if event.action == "fail":
                raise RuntimeError("boom")
            if event.action == "flaky" and self.calls < 2:
                raise ConnectionError("transient")
            uow.session.add(Applied(event_id=str(event.event_id), target=event.target))
            uow.emit(event.caused(AlertRaised, name="echo", summary=event.target))

        self.bus.subscribe(Topic.AUDIT_RECORDED, on_audit_recorded)

        @self.broker.subscriber(Topic.ALERT_RAISED.value)
        async def alerts(message: KafkaMessage) -> None:
            self.alerts.append(json.loads(message.body))

        @self.broker.subscriber(Topic.AUDIT_RECORDED.dlq)
        async def dead(message: KafkaMessage) -> None:
            self.dead.append((message.body, dict(message.headers)))

    def applied(self) -> list[str]:
        with Session(self.engine) as session:
            return [row.target for row in session.exec(select(Applied))]


def audit(action: str = "ok", target: str = "t") -> AuditRecorded:
    return AuditRecorded(action=action, actor="tester", allowed=True, target=target)


async def test_event_applied_and_follow_up_relayed(engine: Engine) -> None:
    h = Harness(engine)
    event = audit(target="a")
    async with TestKafkaBroker(h.broker) as broker:
        await broker.publish(event.to_bytes(), Topic.AUDIT_RECORDED.value)
        await h.bus.relay.drain()  # type: ignore[union-attr]
    assert h.applied() == ["a"]
    assert len(h.alerts) == 1
    assert h.alerts[0]["causation_id"] == str(event.event_id)
    assert h.alerts[0]["correlation_id"] == str(event.correlation_id)
    assert h.alerts[0]["producer"] == "echo"


async def test_duplicate_delivery_is_applied_once(engine: Engine) -> None:
    h = Harness(engine)
    event = audit(target="once")
    async with TestKafkaBroker(h.broker) as broker:
        for _ in range(3):
            await broker.publish(event.to_bytes(), Topic.AUDIT_RECORDED.value)
        await h.bus.relay.drain()  # type: ignore[union-attr]
    assert h.applied() == ["once"]
    assert len(h.alerts) == 1


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"\x00\x01 not json", "undecodable"),
        (b'{"no": "envelope"}', "not-an-event"),
        (
            json.dumps({"event_type": "llmops.audit.recorded", "schema_version": 1}).encode(),
            "invalid",
        ),
        (
            json.dumps({"event_type": "llmops.audit.recorded", "schema_version": 7}).encode(),
            "unknown-version",
        ),
        (AlertRaised(name="x", summary="y").to_bytes(), "wrong-event-type"),
        (audit("fail").to_bytes(), "handler-failed"),
    ],
)
async def test_poison_goes_to_the_dlq_and_good_messages_pass(
    engine: Engine, payload: bytes, reason: str
) -> None:
    h = Harness(engine)
    async with TestKafkaBroker(h.broker) as broker:
        await broker.publish(audit(target="before").to_bytes(), Topic.AUDIT_RECORDED.value)
        await broker.publish(payload, Topic.AUDIT_RECORDED.value, headers={"origin": "test"})
        await broker.publish(audit(target="after").to_bytes(), Topic.AUDIT_RECORDED.value)
    assert h.applied() == ["before", "after"]
    assert len(h.dead) == 1
    body, headers = h.dead[0]
    assert body == payload  # not a raw hop: the DLQ keeps the original bytes
    assert "x-llmops-dlq-claim" not in headers
    assert headers["x-llmops-dlq-reason"] == reason
    assert headers["x-llmops-dlq-topic"] == Topic.AUDIT_RECORDED.value
    assert headers["origin"] == "test"
    assert headers["x-llmops-dlq-error"]


async def test_a_raw_hops_dlq_keeps_a_claim_check_not_the_raw_text(
    engine: Engine, tmp_path: Path
) -> None:
    """feedback.received carries raw text: its dead letters (undecodable or failed) go to
    the transit store, and the DLQ record is a claim check that resolves to the bytes."""
    broker = make_broker(ServiceSettings(), client_id="test")
    transit = ArtifactStore(str(tmp_path / "transit"))
    bus = EventBus(broker, engine, service="raw", attempts=2, backoff_s=0.001, transit=transit)
    dead: list[tuple[bytes, dict[str, str]]] = []

    async def on_feedback(event: FeedbackReceived, uow: UnitOfWork) -> None:
        raise RuntimeError("boom")

    bus.subscribe(Topic.FEEDBACK_RECEIVED, on_feedback)

    @broker.subscriber(Topic.FEEDBACK_RECEIVED.dlq)
    async def on_dead(message: KafkaMessage) -> None:
        dead.append((message.body, dict(message.headers)))

    secret = "Jane Roe, 221B Baker Street, +44 20 7946 0958"
    malformed = b'{"event_type": "llmops.feedback.received", "comment": "' + secret.encode()
    failing = FeedbackReceived(response_id="r1", comment=secret).to_bytes()
    async with TestKafkaBroker(broker) as test_broker:
        await test_broker.publish(malformed, Topic.FEEDBACK_RECEIVED.value)
        await test_broker.publish(failing, Topic.FEEDBACK_RECEIVED.value, headers={"o": "t"})
    assert [headers["x-llmops-dlq-reason"] for _, headers in dead] == [
        "undecodable",
        "handler-failed",
    ]
    for (body, headers), original in zip(dead, [malformed, failing], strict=True):
        assert b"Jane Roe" not in body
        assert b"Baker" not in body
        assert headers["x-llmops-dlq-claim"] == "transit"
        assert headers["x-llmops-dlq-topic"] == Topic.FEEDBACK_RECEIVED.value
        claim = dlq_claim(body, headers)
        assert claim is not None
        assert claim.size == len(original)
        assert resolve_dlq_value(body, headers, transit) == original
    assert dead[1][1]["o"] == "t"
    transit.delete(claim)  # the transit store's lifecycle: the claim no longer resolves
    with pytest.raises(FileNotFoundError):
        resolve_dlq_value(dead[1][0], dead[1][1], transit)


async def test_a_transient_failure_is_retried_not_dead_lettered(engine: Engine) -> None:
    h = Harness(engine)
    async with TestKafkaBroker(h.broker) as broker:
        await broker.publish(audit("flaky", "retried").to_bytes(), Topic.AUDIT_RECORDED.value)
    assert h.applied() == ["retried"]
    assert h.dead == []
    assert h.calls == 2


async def test_a_failed_handler_rolls_back_its_state_and_its_events(engine: Engine) -> None:
    h = Harness(engine)

    async def half_done(event: AuditRecorded, uow: UnitOfWork) -> None:
        uow.session.add(Applied(event_id=str(event.event_id), target="half"))
        uow.emit(event.caused(AlertRaised, name="never", summary="x"))
        raise RuntimeError("after writing")

    h.bus.subscribe(Topic.AUDIT_RECORDED, half_done, group="other")
    async with TestKafkaBroker(h.broker) as broker:
        await broker.publish(audit(target="ok").to_bytes(), Topic.AUDIT_RECORDED.value)
        await h.bus.relay.drain()  # type: ignore[union-attr]
    assert h.applied() == ["ok"]
    assert [a["name"] for a in h.alerts] == ["echo"]
    with Session(engine) as session:
        assert session.exec(select(OutboxEntry)).all() == []


async def test_outbox_rows_wait_until_the_relay_can_publish(engine: Engine) -> None:
    h = Harness(engine)
    with h.bus.unit_of_work() as uow:
        uow.emit(AlertRaised(name="pending", summary="committed before any broker"))
    with Session(engine) as session:
        rows = session.exec(select(OutboxEntry)).all()
    assert [r.topic for r in rows] == [Topic.ALERT_RAISED.value]
    async with TestKafkaBroker(h.broker):
        assert await h.bus.relay.drain() == 1  # type: ignore[union-attr]
    assert [a["name"] for a in h.alerts] == ["pending"]
