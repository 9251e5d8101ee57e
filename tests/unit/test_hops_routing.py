"""Which broker carries which topic: the serving hops apart from the durable log, or one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.serving.worker.adapters.kafka_sink import KafkaReplySink
from shared.bus import EventBus
from shared.bus.broker import make_broker
from shared.cli.common import with_stack
from shared.events import InferenceCompleted
from shared.settings import ServiceSettings
from shared.topics import CANCEL_TOPIC, Topic, bootstrap_for, is_ephemeral
from shared.wire import reply_topic

HOPS = [
    Topic.INFERENCE_REQUESTED.value,
    Topic.WORKER_HEARTBEAT.value,
    reply_topic("gw-1"),
    reply_topic("labeling-1"),
    CANCEL_TOPIC,
]
KEPT = [
    Topic.INFERENCE_COMPLETED.value,
    Topic.INFERENCE_REQUESTED.dlq,  # dead letters are rare: kept on the durable log
    Topic.WORKER_HEARTBEAT.dlq,
    Topic.AUDIT_RECORDED.value,
    Topic.FEEDBACK_RECEIVED.value,
    Topic.API_KEYS.value,
]


def test_the_serving_hops_are_ephemeral_and_nothing_else() -> None:
    assert [name for name in HOPS if not is_ephemeral(name)] == []
    assert [name for name in KEPT if is_ephemeral(name)] == []
    marked = {t for t in Topic if t.spec.ephemeral}
    assert marked == {Topic.INFERENCE_REQUESTED, Topic.WORKER_HEARTBEAT}


def test_embedded_durable_log_routes_the_hops_to_the_memory_broker() -> None:
    cfg = ServiceSettings(
        kafka_bootstrap=None,
        embedded_log="durable",
        embedded_bootstrap="127.0.0.1:7001",
        embedded_ephemeral_bootstrap="127.0.0.1:7002",
    )
    assert {bootstrap_for(name, cfg) for name in HOPS} == {"127.0.0.1:7002"}
    assert {bootstrap_for(name, cfg) for name in KEPT} == {"127.0.0.1:7001"}


def test_the_default_is_the_durable_log_with_a_second_broker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("LLMOPS_EMBEDDED_LOG", "LLMOPS_KAFKA_BOOTSTRAP", "LLMOPS_EMBEDDED_BOOTSTRAP"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("LLMOPS_EMBEDDED_EPHEMERAL_BOOTSTRAP", raising=False)
    cfg = ServiceSettings()
    assert cfg.embedded_log == "durable"
    assert cfg.bootstrap_servers == "127.0.0.1:9092"
    assert cfg.ephemeral_bootstrap_servers == "127.0.0.1:9093"


def test_one_broker_carries_everything_on_a_memory_log_and_on_a_cluster() -> None:
    memory = ServiceSettings(kafka_bootstrap=None, embedded_log="memory")
    cluster = ServiceSettings(kafka_bootstrap="kafka-1:9092,kafka-2:9092", embedded_log="durable")
    for cfg in (memory, cluster):
        assert {bootstrap_for(name, cfg) for name in HOPS + KEPT} == {cfg.bootstrap_servers}
    split = ServiceSettings(kafka_bootstrap="kafka:9092", kafka_ephemeral_bootstrap="hot:9092")
    assert {bootstrap_for(name, split) for name in HOPS} == {"hot:9092"}
    assert {bootstrap_for(name, split) for name in KEPT} == {"kafka:9092"}


def test_the_bus_subscribes_and_publishes_each_topic_on_its_broker() -> None:
    cfg = ServiceSettings(kafka_bootstrap="main:1", kafka_ephemeral_bootstrap="hot:1")
    main = make_broker(cfg)
    hot = make_broker(cfg, bootstrap=cfg.ephemeral_bootstrap_servers)
    bus = EventBus(main, None, service="t", hot_broker=hot)
    assert {id(bus.broker_for(name)) for name in HOPS} == {id(hot)}
    assert {id(bus.broker_for(name)) for name in KEPT} == {id(main)}
    assert bus.relay is None  # no database: nothing to relay
    single = EventBus(main, None, service="t")
    assert {id(single.broker_for(name)) for name in HOPS + KEPT} == {id(main)}


class _Producer:
    def __init__(self, log: list[tuple[int, str]]) -> None:
        self.log = log

    async def start(self) -> None:
        return None

    async def send(self, topic: str, value: bytes, **_kwargs: object) -> None:
        self.log.append((id(self), topic))

    async def flush(self) -> None:
        return None

    async def stop(self) -> None:
        return None


async def test_the_worker_sink_sends_replies_and_heartbeats_apart_from_the_result() -> None:
    sent: list[tuple[int, str]] = []
    made: list[_Producer] = []

    def factory() -> _Producer:  # the main log's producer first, then the hops'
        made.append(_Producer(sent))
        return made[-1]

    sink = KafkaReplySink("main:1", "t", producer_factory=factory, ephemeral_bootstrap="hot:1")
    await sink.start()
    try:
        done = InferenceCompleted(request_id="r1", model="m", model_version="1", text="hi")
        await sink.send(reply_topic("gw-1"), done, "r1")
        await sink.send(Topic.INFERENCE_COMPLETED.value, done, "r1")
        await sink.send(Topic.WORKER_HEARTBEAT.value, done, "w1")  # routed by topic alone
        await sink.flush()
    finally:
        await sink.stop()
    main, hot = made  # in order on each broker (the main log's records go out on their own)
    assert [topic for producer, topic in sent if producer == id(hot)] == [
        reply_topic("gw-1"),
        Topic.WORKER_HEARTBEAT.value,
    ]
    assert [topic for producer, topic in sent if producer == id(main)] == [
        Topic.INFERENCE_COMPLETED.value
    ]


def test_the_cli_follows_the_running_stack(tmp_path: Path) -> None:
    cfg = ServiceSettings(kafka_bootstrap=None, embedded_log="durable", data_dir=tmp_path)
    state = {"bootstrap": cfg.bootstrap_servers, "ephemeral_bootstrap": "127.0.0.1:7010"}
    (tmp_path / "stack.json").write_text(json.dumps(state))
    assert with_stack(cfg).ephemeral_bootstrap_servers == "127.0.0.1:7010"
    # the log fell back to memory: its one broker carries the hops too
    state["ephemeral_bootstrap"] = cfg.bootstrap_servers
    (tmp_path / "stack.json").write_text(json.dumps(state))
    assert with_stack(cfg).ephemeral_bootstrap_servers == cfg.bootstrap_servers
    cluster = cfg.model_copy(update={"kafka_bootstrap": "kafka:9092"})
    assert with_stack(cluster).ephemeral_bootstrap_servers == "kafka:9092"
