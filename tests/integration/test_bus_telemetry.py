"""The messaging telemetry every service gets from make_broker and the EventBus, against the
real embedded broker: one span per consumed event, the trace continuing through a publish
made in the handler, and the ``messaging.*`` metrics, lag and DLQ counts on /metrics."""

from __future__ import annotations

import asyncio
import logging
import uuid
from pathlib import Path
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from faststream.kafka.annotations import KafkaMessage
from faststream.middlewares import AckPolicy
from opentelemetry import metrics, propagate, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families

from shared.bus import EventBus, UnitOfWork, make_broker
from shared.events import AuditRecorded
from shared.settings import ServiceSettings
from shared.storage import make_engine
from shared.telemetry import prometheus_payload, setup_telemetry
from shared.topics import Topic, ensure_topics
from tests.support.stack import produce, read_topic

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def exporter(span_exporter: InMemorySpanExporter) -> InMemorySpanExporter:
    """The module's spans, and the Prometheus reader its metrics are read from."""
    if not isinstance(metrics.get_meter_provider(), MeterProvider):
        root = logging.getLogger()
        handlers, level = root.handlers[:], root.level
        setup_telemetry("telemetry-test", log_format="text")  # the Prometheus reader
        root.handlers[:], root.level = handlers, level
    return span_exporter


def samples(name: str, **labels: str) -> list[float]:
    """Values of the /metrics samples called ``name`` whose labels include ``labels``."""
    text = prometheus_payload()[0].decode()
    return [
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name and labels.items() <= s.labels.items()
    ]


async def make_topics(bootstrap: str, *names: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(n, 1, 1) for n in names])
    finally:
        await admin.close()


async def wait_for(predicate: Any, timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError
        await asyncio.sleep(0.1)


def hex_id(span: ReadableSpan) -> str:
    return f"{span.get_span_context().span_id:016x}"


async def test_one_span_per_event_and_the_trace_crosses_the_handlers_publish(
    private_kafka: str, exporter: InMemorySpanExporter
) -> None:
    run = uuid.uuid4().hex[:8]
    src, dst, group = f"tel.in.{run}", f"tel.out.{run}", f"tel-{run}"
    await make_topics(private_kafka, src, dst)
    settings = ServiceSettings(kafka_bootstrap=private_kafka)
    service = make_broker(settings, "tel-service")
    handled: list[bytes] = []

    @service.subscriber(src, group_id=group, auto_offset_reset="earliest", ack_policy=AckPolicy.ACK)
    async def relay(message: KafkaMessage) -> None:
        handled.append(message.body)
        if message.body == b"fail":
            raise ValueError("refused")
        await service.publish(message.body + b"!", dst)

    bodies = [b"a", b"b", b"fail", b"c", b"d"]
    client = make_broker(settings, "tel-client")
    tracer = trace.get_tracer("test")
    await client.start()
    with tracer.start_as_current_span("test-root"):
        for body in bodies:
            await client.publish(body, src)
    await client.stop()
    await service.start()
    try:
        await wait_for(lambda: len(handled) == len(bodies))
        out = await read_topic(private_kafka, dst, count=4, timeout=20)
    finally:
        await service.stop()
    assert sorted(r.value for r in out) == [b"a!", b"b!", b"c!", b"d!"]

    spans = [
        s
        for s in exporter.get_finished_spans()
        if (s.attributes or {}).get("messaging.destination.name") in (src, dst)
    ]
    consumers = [s for s in spans if s.kind == trace.SpanKind.CONSUMER]
    producers = [s for s in spans if s.kind == trace.SpanKind.PRODUCER]
    # one span per consumed event; the publishes in the handler add none of their own
    assert len(consumers) == len(bodies)
    assert {s.name for s in consumers} == {f"{src} process"}
    assert len(producers) == len(bodies)  # the client's, outside any handler
    assert {s.name for s in producers} == {f"{src} publish"}
    by_id = {hex_id(s): s for s in producers}
    for span in consumers:  # each consumer span is the child of its message's publish span
        assert span.parent is not None
        assert f"{span.parent.span_id:016x}" in by_id
        assert (span.attributes or {})["messaging.consumer.group.name"] == group
    failed = [s for s in consumers if not s.status.is_ok]
    assert len(failed) == 1
    # the follow-ups carry the consumer span as their parent: the chain goes on
    consumer_ids = {hex_id(s) for s in consumers}
    for record in out:
        traceparent = dict(record.headers)["traceparent"].decode()
        assert traceparent.split("-")[2] in consumer_ids
    assert len({s.context.trace_id for s in consumers}) == 1  # all under test-root

    ok = {"messaging_destination_name": src, "messaging_consumer_group_name": group}
    consumed = "messaging_client_consumed_messages_total"
    assert samples(consumed, **ok, error_type="") == [4.0]
    assert samples(consumed, **ok, error_type="ValueError") == [1.0]
    assert sum(samples("messaging_process_duration_seconds_count", **ok)) == 5.0
    sent = "messaging_client_sent_messages_total"
    assert samples(sent, messaging_destination_name=src, messaging_system="kafka") == [5.0]
    assert samples(sent, messaging_destination_name=dst) == [4.0]
    lag = samples("llmops_messaging_consumer_lag", **ok, messaging_destination_partition_id="0")
    assert len(lag) == 1
    assert 0 <= lag[0] <= len(bodies) - 1


async def test_event_bus_batches_trace_each_event_and_count_dead_letters(
    private_kafka: str, exporter: InMemorySpanExporter, tmp_path: Path
) -> None:
    await ensure_topics(private_kafka)
    settings = ServiceSettings(kafka_bootstrap=private_kafka)
    broker = make_broker(settings, "tel-bus")
    engine = make_engine(f"sqlite:///{tmp_path}/bus.db")
    run = uuid.uuid4().hex[:8]
    bus = EventBus(broker, engine, service=f"tel-{run}", backoff_s=0.01)
    group = f"tel-{run}.audit"
    seen: list[str] = []

    async def on_audit(event: AuditRecorded, uow: UnitOfWork) -> None:
        seen.append(event.target)

    bus.subscribe(Topic.AUDIT_RECORDED, on_audit, group=group)
    good = [
        AuditRecorded(action="x", actor="t", allowed=True, target=f"{run}-{i}") for i in range(4)
    ]
    tracer = trace.get_tracer("test")
    with tracer.start_as_current_span("batch-root") as root:
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        headers = [(k, v.encode()) for k, v in carrier.items()]
        await produce(
            private_kafka,
            Topic.AUDIT_RECORDED.value,
            [
                good[0].to_bytes(),
                good[1].to_bytes(),
                b"\xde\xad",
                good[2].to_bytes(),
                good[3].to_bytes(),
            ],
            key=b"one-partition",
            headers=headers,
        )
    await broker.start()
    await bus.start()
    try:
        await wait_for(lambda: {e.target for e in good} <= set(seen))
        await wait_for(  # the dead letter is published in the same delivery
            lambda: samples(
                "llmops_messaging_dead_lettered_total",
                messaging_destination_name=Topic.AUDIT_RECORDED.value,
                messaging_consumer_group_name=group,
            )
        )
    finally:
        await bus.stop()
        await broker.stop()

    root_id = f"{root.get_span_context().span_id:016x}"
    mine = [
        s
        for s in exporter.get_finished_spans()
        if s.kind == trace.SpanKind.CONSUMER
        and (s.attributes or {}).get("messaging.consumer.group.name") == group
    ]
    # one span per decoded event (the EventBus opens them in a batch), each the child of
    # the producer's context from its record's headers
    assert len(mine) == len(good)
    assert all(s.parent is not None and f"{s.parent.span_id:016x}" == root_id for s in mine)

    where = {"messaging_destination_name": Topic.AUDIT_RECORDED.value}
    dead = samples(
        "llmops_messaging_dead_lettered_total",
        **where,
        messaging_consumer_group_name=group,
        error_type="undecodable",
    )
    assert dead == [1.0]
    assert samples(
        "llmops_events_handled_total",
        topic=Topic.AUDIT_RECORDED.value,
        handler="on_audit",
        outcome="applied",
    )
    consumed = samples(
        "messaging_client_consumed_messages_total", **where, messaging_consumer_group_name=group
    )
    assert sum(consumed) == 5.0  # every record of the batches, the undecodable one too
