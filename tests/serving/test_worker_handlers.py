"""The worker's control handlers on FastStream's in-memory broker (engines are fakes)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from faststream.kafka import TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage

from services.serving.worker.adapters.state_store import load_snapshot
from services.serving.worker.app import build
from services.serving.worker.config import WorkerSettings
from services.serving.worker.routing import Version
from shared.authority import Signer, provision, service_principal
from shared.bus import resolve_dlq_value
from shared.events import (
    AuditRecorded,
    ClaimCheck,
    InferenceCompleted,
    InferenceRequested,
    ModelPromoted,
    ModelRolledBack,
    decode,
)
from shared.modelkit import MODEL_DIR_MEDIA_TYPE
from shared.topics import Topic
from shared.wire import reply_topic
from tests.serving.fakes import FakeLoader, FakeSink
from tests.support.stack import until

pytestmark = pytest.mark.handlers


def _model_dir(root: Path) -> Path:
    root.mkdir(parents=True)
    (root / "config.json").write_text("{}")
    (root / "tokenizer.json").write_text("{}")
    return root


async def test_promotion_rollback_and_a_bad_promotion(tmp_path: Path) -> None:
    settings = WorkerSettings(data_dir=tmp_path, handler_attempts=2, retry_backoff_s=0.001)
    loader = FakeLoader()
    runtime, _app = build(settings, loader=loader)
    table, control = runtime.state["table"], runtime.state["control"]
    await control.promote(Version("m", "bootstrap", "/boot"), datetime(2020, 1, 1, tzinfo=UTC))
    dead: list[dict[str, str]] = []

    @runtime.broker.subscriber(Topic.MODEL_PROMOTED.dlq)
    async def on_dead(message: KafkaMessage) -> None:
        dead.append(dict(message.headers))

    v2 = _model_dir(tmp_path / "v2")
    artifact = ClaimCheck(uri=str(v2), sha256="0" * 64, size=2, media_type=MODEL_DIR_MEDIA_TYPE)
    async with TestKafkaBroker(runtime.broker) as broker:
        promoted = ModelPromoted(model_name="m", model_version="v2", artifact=artifact)
        await broker.publish(promoted.to_bytes(), Topic.MODEL_PROMOTED.value)
        assert table.choose("m", 0.5)[0].version == "v2"
        assert loader.loaded == ["/boot", str(v2)]

        await broker.publish(promoted.to_bytes(), Topic.MODEL_PROMOTED.value)  # redelivery
        assert loader.loaded == ["/boot", str(v2)]

        back = ModelRolledBack(model_name="m", from_version="v2", to_version="bootstrap")
        await broker.publish(back.to_bytes(), Topic.MODEL_ROLLED_BACK.value)
        assert table.choose("m", 0.5)[0].version == "bootstrap"

        unknown = ModelPromoted(model_name="m", model_version="v9")  # no artifact, never seen
        await broker.publish(unknown.to_bytes(), Topic.MODEL_PROMOTED.value)
        assert table.choose("m", 0.5)[0].version == "bootstrap"
        assert dead[0]["x-llmops-dlq-reason"] == "handler-failed"

    assert runtime.engine is not None
    snapshot = load_snapshot(runtime.engine)
    assert snapshot is not None
    assert snapshot.body["routes"]["m"]["champion"]["version"] == "bootstrap"


async def test_a_promoted_lora_adapter_joins_the_running_engine_and_is_saved(
    tmp_path: Path,
) -> None:
    settings = WorkerSettings(data_dir=tmp_path, handler_attempts=1, retry_backoff_s=0.001)
    loader = FakeLoader()
    runtime, _app = build(settings, loader=loader)
    table, control = runtime.state["table"], runtime.state["control"]
    await control.promote(Version("m", "bootstrap", "/boot"), datetime(2020, 1, 1, tzinfo=UTC))
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text('{"base_model_name_or_path": "m", "r": 8}')
    (adapter / "adapter_model.safetensors").write_bytes(b"weights")
    artifact = ClaimCheck(
        uri=str(adapter), sha256="0" * 64, size=2, media_type=MODEL_DIR_MEDIA_TYPE
    )
    async with TestKafkaBroker(runtime.broker) as broker:
        promoted = ModelPromoted(
            model_name="m",
            model_version="a1",
            artifact=artifact,
            alias="challenger",
            traffic_share=0.5,
        )
        await broker.publish(promoted.to_bytes(), Topic.MODEL_PROMOTED.value)
        assert table.choose("m", 0.1)[0].version == "a1"
    assert loader.loaded == ["/boot"]  # no new engine: the adapter joined the running one
    assert loader.engines["/boot"].added == ["m:a1"]
    assert runtime.engine is not None
    snapshot = load_snapshot(runtime.engine)
    assert snapshot is not None
    challenger = snapshot.body["routes"]["m"]["challenger"]
    assert (challenger["version"], challenger["base"]) == ("a1", ["m", "bootstrap"])


async def test_a_request_whose_reply_to_is_not_a_reply_topic_is_dead_lettered(
    tmp_path: Path,
) -> None:
    """reply_to names where the worker writes: anything but a gateway's reply topic (an
    audit topic, another service's input) is refused whole, nothing generated or written."""
    settings = WorkerSettings(data_dir=tmp_path, handler_attempts=1, retry_backoff_s=0.001)
    sink = FakeSink()
    runtime, _app = build(settings, loader=FakeLoader(), replies=sink)
    await runtime.state["control"].promote(Version("m", "1", "/m1"), datetime.now(UTC))
    dead: list[dict[str, str]] = []

    @runtime.broker.subscriber(Topic.INFERENCE_REQUESTED.dlq)
    async def on_dead(message: KafkaMessage) -> None:
        dead.append(dict(message.headers))

    def request(reply_to: str) -> bytes:
        return InferenceRequested(
            request_id=f"r-{len(sink.sent)}-{len(dead)}",
            model="m",
            prompt="one two",
            reply_to=reply_to,
            stream=True,
        ).to_bytes()

    async with TestKafkaBroker(runtime.broker) as broker:
        for target in (Topic.AUDIT_RECORDED.value, "llmops.inference.replies.", "x" * 300):
            await broker.publish(request(target), Topic.INFERENCE_REQUESTED.value)
        await until(lambda: len(dead) == 3)
        assert sink.sent == []  # no chunk, no result, not even on the catalogue topic
        assert {d["x-llmops-dlq-reason"] for d in dead} == {"reply-to-not-allowed"}
        assert "not a gateway reply topic" in dead[0]["x-llmops-dlq-error"]

        await broker.publish(request(reply_topic("gw-1")), Topic.INFERENCE_REQUESTED.value)
        await until(lambda: sink.on(Topic.INFERENCE_COMPLETED.value))
        assert [type(e).__name__ for e in sink.on(reply_topic("gw-1"))][-1] == (
            "InferenceCompleted"
        )
    assert len(dead) == 3


async def test_commands_without_authority_change_nothing(tmp_path: Path) -> None:
    """A forged promotion does not load its directory; an unsigned inference request is not
    generated. Both are dead-lettered as unauthorized; evaluation's signed promotion applies."""
    keys = provision("llm-worker-test", tmp_path, {"evaluation": {ModelPromoted.EVENT_TYPE}})
    settings = WorkerSettings(data_dir=tmp_path, require_authority=True, handler_attempts=1)
    loader = FakeLoader()
    runtime, _app = build(settings, loader=loader)
    table, control = runtime.state["table"], runtime.state["control"]
    await control.promote(Version("m", "bootstrap", "/boot"), datetime(2020, 1, 1, tzinfo=UTC))
    dead: list[dict[str, str]] = []

    for topic in (Topic.MODEL_PROMOTED, Topic.INFERENCE_REQUESTED):

        @runtime.broker.subscriber(topic.dlq, group_id=f"dead-{topic.name}")
        async def on_dead(message: KafkaMessage) -> None:
            dead.append(dict(message.headers))

    evil = _model_dir(tmp_path / "evil")
    artifact = ClaimCheck(uri=str(evil), sha256="0" * 64, size=2, media_type=MODEL_DIR_MEDIA_TYPE)
    forged = Signer.admin("guessed").sign(
        ModelPromoted(model_name="m", model_version="evil", artifact=artifact)
    )
    request = InferenceRequested(
        request_id="r1", model="m", prompt="hi", reply_to="llmops.inference.replies.x"
    )
    good_dir = _model_dir(tmp_path / "v2")
    good = Signer.from_text(service_principal("evaluation"), "service", keys["evaluation"]).sign(
        ModelPromoted(
            model_name="m",
            model_version="v2",
            artifact=artifact.model_copy(update={"uri": str(good_dir)}),
        )
    )
    async with TestKafkaBroker(runtime.broker) as broker:
        await broker.publish(forged.to_bytes(), Topic.MODEL_PROMOTED.value)
        await broker.publish(request.to_bytes(), Topic.INFERENCE_REQUESTED.value)
        assert loader.loaded == ["/boot"]
        await broker.publish(good.to_bytes(), Topic.MODEL_PROMOTED.value)
        assert loader.loaded == ["/boot", str(good_dir)]
        assert table.choose("m", 0.5)[0].version == "v2"
    assert sorted((d["x-llmops-dlq-topic"], d["x-llmops-dlq-error"]) for d in dead) == [
        (Topic.INFERENCE_REQUESTED.value, "unsigned"),
        (Topic.MODEL_PROMOTED.value, f"key {forged.authority.key_id!r} is not admin's"),  # type: ignore[union-attr]
    ]
    assert {d["x-llmops-dlq-reason"] for d in dead} == {"unauthorized"}


async def test_a_replayed_inference_request_is_not_generated_again(tmp_path: Path) -> None:
    """Workers are not idempotent (a request generates each time it arrives): a signed
    request copied back onto the topic is refused by its event id, audited, and the worker
    keeps serving; an expired one is refused too."""
    keys = provision("llm-worker-test", tmp_path, {"serving": {InferenceRequested.EVENT_TYPE}})
    settings = WorkerSettings(data_dir=tmp_path, require_authority=True, handler_attempts=1)
    sink = FakeSink()
    runtime, _app = build(settings, loader=FakeLoader(), replies=sink)
    await runtime.state["control"].promote(Version("m", "1", "/m1"), datetime.now(UTC))
    gateway = Signer.from_text(service_principal("serving"), "service", keys["serving"])
    dead: list[tuple[bytes, dict[str, str]]] = []
    audits: list[AuditRecorded] = []

    @runtime.broker.subscriber(Topic.INFERENCE_REQUESTED.dlq, group_id="dead")
    async def on_dead(message: KafkaMessage) -> None:
        dead.append((message.body, dict(message.headers)))

    @runtime.broker.subscriber(Topic.AUDIT_RECORDED.value, group_id="audit")
    async def on_audit(message: KafkaMessage) -> None:
        event = decode(message.body, expected=AuditRecorded)
        assert isinstance(event, AuditRecorded)
        audits.append(event)

    def request(request_id: str, **sign: Any) -> bytes:
        event = InferenceRequested(
            request_id=request_id, model="m", prompt="one two", reply_to=reply_topic("gw-1")
        )
        return gateway.sign(event, **sign).to_bytes()

    def completed() -> list[str]:
        return [
            e.request_id  # type: ignore[union-attr]
            for e in sink.on(reply_topic("gw-1"))
            if isinstance(e, InferenceCompleted)
        ]

    first = request("r1")
    async with TestKafkaBroker(runtime.broker) as broker:
        await broker.publish(first, Topic.INFERENCE_REQUESTED.value)
        await until(lambda: completed() == ["r1"])
        await broker.publish(first, Topic.INFERENCE_REQUESTED.value, key=b"another-partition")
        stale = request("r2", now=datetime.now(UTC) - timedelta(hours=2))
        await broker.publish(stale, Topic.INFERENCE_REQUESTED.value)
        await until(lambda: len(dead) == 2)
        await broker.publish(request("r3"), Topic.INFERENCE_REQUESTED.value)
        await until(lambda: completed() == ["r1", "r3"])
        await until(lambda: len(audits) == 2)
    # a raw hop: the DLQ holds claim checks to the transit store, not the prompts
    assert all(b"one two" not in body for body, _ in dead)
    assert [resolve_dlq_value(body, headers, runtime.transit) for body, headers in dead] == [
        first,
        stale,
    ]
    assert {headers["x-llmops-dlq-reason"] for _, headers in dead} == {"unauthorized"}
    replayed, expired = (headers["x-llmops-dlq-error"] for _, headers in dead)
    assert replayed.startswith("replayed: event ")
    assert expired.startswith("expired at ")
    assert [a.action for a in audits] == ["command.rejected"] * 2
    assert audits[0].actor == "service:serving"
    assert audits[0].details["reason"] == replayed
