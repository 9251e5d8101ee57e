"""Commands on the in-memory broker: only a signed, allowed command reaches its handler.

Unsigned, forged and under-privileged commands go to the topic's DLQ with reason
``unauthorized``, change nothing, and are audited; the partition keeps flowing.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from faststream.kafka import TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage
from sqlalchemy.engine import Engine

from shared.authority import Signer, Verifier, provision, service_principal
from shared.bus import EventBus, make_broker, resolve_dlq_value
from shared.bus.store import UnitOfWork
from shared.events import (
    AlertRaised,
    AuditRecorded,
    Event,
    IngestRequested,
    ModelPromoted,
    TrainingRequested,
    decode,
)
from shared.events.envelope import utcnow
from shared.events.ingest import SourceSpec
from shared.settings import ServiceSettings
from shared.storage.artifacts import ArtifactStore
from shared.topics import Topic

pytestmark = pytest.mark.handlers

SECRET = "llm-handlers-admin-secret"


class Harness:
    """A service consuming two command topics, with the verifier `llmops up` would give it."""

    def __init__(self, engine: Engine, data_dir: Path) -> None:
        self.keys = provision(
            SECRET,
            data_dir,
            {
                "monitoring": {TrainingRequested.EVENT_TYPE},
                "evaluation": {ModelPromoted.EVENT_TYPE},
            },
        )
        settings = ServiceSettings(data_dir=data_dir, require_authority=True)
        self.broker = make_broker(settings, client_id="test")
        self.bus = EventBus(
            self.broker,
            engine,
            service="consumer",
            attempts=2,
            backoff_s=0.001,
            verifier=Verifier(settings),
            transit=ArtifactStore(settings.transit_root),
        )
        self.transit = self.bus.transit
        self.handled: list[Event] = []
        self.dead: list[tuple[bytes, dict[str, str]]] = []
        self.audits: list[AuditRecorded] = []

        async def on_command(event: Event, uow: UnitOfWork) -> None:
            self.handled.append(event)

        self.bus.subscribe(Topic.INGEST_REQUESTED, on_command)
        self.bus.subscribe(Topic.MODEL_PROMOTED, on_command)
        self.bus.subscribe(Topic.TRAINING_REQUESTED, on_command)

        for topic in (Topic.INGEST_REQUESTED, Topic.MODEL_PROMOTED, Topic.TRAINING_REQUESTED):

            @self.broker.subscriber(topic.dlq, group_id=f"dlq-{topic.name}")
            async def dead(message: KafkaMessage) -> None:
                self.dead.append((message.body, dict(message.headers)))

        @self.broker.subscriber(Topic.AUDIT_RECORDED.value, group_id="audit")
        async def audit(message: KafkaMessage) -> None:
            event = decode(message.body, expected=AuditRecorded)
            assert isinstance(event, AuditRecorded)
            self.audits.append(event)

    def service(self, name: str) -> Signer:
        return Signer.from_text(service_principal(name), "service", self.keys[name])


def ingest(uri: str = "/data/tickets.jsonl") -> IngestRequested:
    return IngestRequested(dataset="tickets", sources=[SourceSpec(uri=uri)])


def promotion() -> ModelPromoted:
    return ModelPromoted(model_name="m", model_version="v9")


def forged(event: Event, **changes: Any) -> bytes:
    payload = json.loads(Signer.admin(SECRET).sign(event).to_bytes())
    payload.update(changes)
    return json.dumps(payload).encode()


@pytest.mark.parametrize(
    ("make", "topic", "why"),
    [
        (lambda h: ingest("/etc/hostname").to_bytes(), Topic.INGEST_REQUESTED, "unsigned"),
        (
            lambda h: forged(ingest(), dataset="other"),
            Topic.INGEST_REQUESTED,
            "bad signature",
        ),
        (
            lambda h: Signer.admin("guessed").sign(promotion()).to_bytes(),
            Topic.MODEL_PROMOTED,
            "is not admin's",
        ),
        (
            lambda h: h.service("monitoring").sign(promotion()).to_bytes(),
            Topic.MODEL_PROMOTED,
            "may not issue llmops.model.promoted",
        ),
        (
            lambda h: Signer.admin(SECRET).sign(ingest(), now=utcnow() - timedelta(hours=2)),
            Topic.INGEST_REQUESTED,
            "expired at ",
        ),
        (
            lambda h: Signer.admin(SECRET).sign(ingest(), now=utcnow() + timedelta(hours=1)),
            Topic.INGEST_REQUESTED,
            "issued in the future",
        ),
    ],
    ids=["unsigned", "tampered", "wrong-key", "under-privileged", "expired", "future-dated"],
)
async def test_an_unauthorized_command_is_dead_lettered_and_audited(
    engine: Engine, data_dir: Path, make: Any, topic: Topic, why: str
) -> None:
    h = Harness(engine, data_dir)
    payload = make(h)
    payload = payload.to_bytes() if isinstance(payload, Event) else payload
    good = h.service("evaluation").sign(promotion()) if topic is Topic.MODEL_PROMOTED else None
    good = good or Signer.admin(SECRET).sign(ingest())
    async with TestKafkaBroker(h.broker) as broker:
        await broker.publish(payload, topic.value, headers={"origin": "attacker"})
        await broker.publish(good.to_bytes(), topic.value)
    assert [e.event_id for e in h.handled] == [good.event_id]  # the next one still flows
    assert len(h.dead) == 1
    body, headers = h.dead[0]
    if topic.spec.raw_text:  # ingest.requested may carry raw records: a claim check
        assert headers["x-llmops-dlq-claim"] == "transit"
        assert body != payload
        assert h.transit is not None
        body = resolve_dlq_value(body, headers, h.transit)
    assert body == payload
    assert headers["x-llmops-dlq-reason"] == "unauthorized"
    assert why in headers["x-llmops-dlq-error"]
    assert headers["x-llmops-dlq-topic"] == topic.value
    assert headers["origin"] == "attacker"
    [audit] = h.audits
    assert audit.allowed is False
    assert audit.action == "command.rejected"
    assert audit.target == topic.value
    assert why in audit.details["reason"]


async def test_commands_signed_by_their_issuers_are_handled(engine: Engine, data_dir: Path) -> None:
    h = Harness(engine, data_dir)
    sent = [
        Signer.admin(SECRET).sign(ingest()),
        h.service("evaluation").sign(promotion()),
        Signer.admin(SECRET).sign(promotion()),
    ]
    async with TestKafkaBroker(h.broker) as broker:
        for event in sent:
            await broker.publish(event.to_bytes(), Topic.for_event(event).value)
    assert [e.event_id for e in h.handled] == [e.event_id for e in sent]
    assert h.dead == []
    assert h.audits == []


async def test_a_service_signs_the_commands_it_emits(engine: Engine, data_dir: Path) -> None:
    """Monitoring's own bus signs the TrainingRequested its handler emits (outbox path);
    a verifying consumer accepts it, and an unsigned copy of the same event is refused."""
    h = Harness(engine, data_dir)
    monitoring = EventBus(
        h.broker, engine, service="monitoring", signer=h.service("monitoring"), attempts=1
    )

    async def on_alert(event: AlertRaised, uow: UnitOfWork) -> None:
        uow.emit(
            event.caused(
                TrainingRequested,
                model_name="m",
                dataset="d",
                dataset_version="v1",
                base_model="b",
                reason="drift",
            )
        )

    monitoring.subscribe(Topic.ALERT_RAISED, on_alert)
    async with TestKafkaBroker(h.broker) as broker:
        await broker.publish(
            AlertRaised(name="drift", summary="s").to_bytes(), "llmops.alert.raised.v1"
        )
        await monitoring.relay.drain()  # type: ignore[union-attr]
        [emitted] = h.handled
        assert emitted.authority is not None
        assert emitted.authority.principal == "service:monitoring"
        unsigned = emitted.model_copy(update={"authority": None})
        await broker.publish(unsigned.to_bytes(), Topic.TRAINING_REQUESTED.value)
    assert len(h.handled) == 1
    assert [headers["x-llmops-dlq-error"] for _, headers in h.dead] == ["unsigned"]


async def test_a_bus_without_a_verifier_accepts_unsigned_commands(
    engine: Engine, data_dir: Path
) -> None:
    """LLMOPS_REQUIRE_AUTHORITY=false: the embedded tests' and old producers' mode."""
    settings = ServiceSettings(data_dir=data_dir)
    broker = make_broker(settings, client_id="test")
    bus = EventBus(broker, engine, service="consumer")
    handled: list[Event] = []

    async def on_command(event: Event, uow: UnitOfWork) -> None:
        handled.append(event)

    bus.subscribe(Topic.INGEST_REQUESTED, on_command)
    async with TestKafkaBroker(broker) as test_broker:
        await test_broker.publish(ingest().to_bytes(), Topic.INGEST_REQUESTED.value)
    assert len(handled) == 1
