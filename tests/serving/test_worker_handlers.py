"""The worker's control handlers on FastStream's in-memory broker (engines are fakes)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from faststream.kafka import TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage

from services.serving.worker.adapters.state_store import load_snapshot
from services.serving.worker.app import build
from services.serving.worker.config import WorkerSettings
from services.serving.worker.routing import Version
from shared.authority import Signer, provision, service_principal
from shared.events import ClaimCheck, InferenceRequested, ModelPromoted, ModelRolledBack
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
