"""The EventBus batch path and the broker's direct sends against the real embedded broker
and both databases: a burst with a poison event, an undecodable record and redelivered
events is applied once per event, its follow-ups relayed once each in per-key order with
the trace context of the handler that emitted them; ``publish`` sends the record
FastStream's own publish would."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import defaultdict
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from shared.bus import EventBus, UnitOfWork, make_broker
from shared.bus.broker import TracedKafkaBroker
from shared.events import AlertRaised, AuditRecorded
from shared.settings import ServiceSettings
from shared.topics import Topic, ensure_topics
from tests.support.echo_service import Applied
from tests.support.stack import produce, read_topic

pytestmark = pytest.mark.integration

KEYS = ("k-a", "k-b", "k-c")


async def wait_for(predicate: Any, timeout: float = 60.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError
        await asyncio.sleep(0.05)


def applied(engine: Engine) -> list[str]:
    with Session(engine) as session:
        return [r.target for r in session.exec(select(Applied).order_by(col(Applied.id)))]


async def test_a_burst_is_applied_once_per_event_and_relayed_in_key_order(
    private_kafka: str, engine: Engine, span_exporter: InMemorySpanExporter
) -> None:
    await ensure_topics(private_kafka)
    run = uuid.uuid4().hex[:8]
    broker = make_broker(ServiceSettings(kafka_bootstrap=private_kafka), f"batch-{run}")
    bus = EventBus(broker, engine, service=f"batch-{run}", attempts=2, backoff_s=0.01)
    group = f"batch-{run}.audit"
    calls: list[str] = []

    async def on_audit(event: AuditRecorded, uow: UnitOfWork) -> None:
        if not event.target.startswith(run):
            return  # an earlier test's event (the module's broker is shared)
        calls.append(event.target)
        if event.action == "poison":
            raise RuntimeError("this event always fails")
        uow.session.add(Applied(event_id=str(event.event_id), target=event.target))
        alert = event.caused(AlertRaised, name=run, summary=event.target)
        uow.emit(alert, key=event.actor)  # the follow-up keeps the event's key

    bus.subscribe(Topic.AUDIT_RECORDED, on_audit, group=group)
    events = [
        AuditRecorded(action="x", actor=KEYS[i % 3], allowed=True, target=f"{run}-{i:03d}")
        for i in range(90)
    ]
    poison = AuditRecorded(action="poison", actor=KEYS[0], allowed=True, target=f"{run}-bad")
    burst = [e.to_bytes() for e in events[:40]]
    burst += [poison.to_bytes(), b"\x00 not an event"]  # in the middle of a fetched batch
    burst += [e.to_bytes() for e in events[40:]]
    burst += [e.to_bytes() for e in events[10:30]]  # redelivered: applied before
    await produce(private_kafka, Topic.AUDIT_RECORDED.value, burst, key=b"one-partition")

    await broker.start()
    await bus.start()
    try:
        await wait_for(lambda: len(applied(engine)) >= len(events) and poison.target in calls)
        await bus.relay.drain()  # type: ignore[union-attr]
    finally:
        await bus.stop()
        await broker.stop()

    # exactly one effect per event: state and follow-ups (a handler may run again for an
    # event whose batch rolled back when the poison event failed in it)
    assert applied(engine) == [e.target for e in events]
    assert set(calls) == {e.target for e in events} | {poison.target}
    records = await read_topic(private_kafka, Topic.ALERT_RAISED.value, count=10_000, timeout=5)
    mine = [r for r in records if json.loads(r.value)["name"] == run]
    assert sorted(json.loads(r.value)["summary"] for r in mine) == [e.target for e in events]
    # per-key order: each key's follow-ups in the order of its events
    by_key: dict[str, list[str]] = defaultdict(list)
    for record in sorted(mine, key=lambda r: (r.partition, r.offset)):
        by_key[record.key.decode()].append(json.loads(record.value)["summary"])
    for key in KEYS:
        assert by_key[key] == [e.target for e in events if e.actor == key]
    # the poison event and the undecodable record went to the DLQ, nothing else
    dead = await read_topic(private_kafka, Topic.AUDIT_RECORDED.dlq, count=10_000, timeout=5)
    reasons = {
        r.value: dict((k, v.decode()) for k, v in r.headers)["x-llmops-dlq-reason"]
        for r in dead
        if r.value in (poison.to_bytes(), b"\x00 not an event")
    }
    assert reasons == {poison.to_bytes(): "handler-failed", b"\x00 not an event": "undecodable"}
    # traces: each follow-up carries its handler's consumer span; the relay's drains are
    # producer spans linked to those contexts
    consumer_spans = {
        s.get_span_context().span_id: s
        for s in span_exporter.get_finished_spans()
        if s.kind == trace.SpanKind.CONSUMER
        and (s.attributes or {}).get("messaging.consumer.group.name") == group
    }
    parents = [
        int(dict((k, v.decode()) for k, v in r.headers)["traceparent"].split("-")[2], 16)
        for r in mine
    ]
    assert all(span_id in consumer_spans for span_id in parents)
    relayed = [
        s
        for s in span_exporter.get_finished_spans()
        if s.kind == trace.SpanKind.PRODUCER
        and s.name == f"{Topic.ALERT_RAISED.value} publish"
        and {link.context.span_id for link in s.links} & set(parents)
    ]
    assert relayed
    assert {link.context.span_id for s in relayed for link in s.links} == set(parents)
    assert sum((s.attributes or {})["messaging.batch.message_count"] for s in relayed) == len(mine)


async def test_a_publish_sends_the_record_faststreams_publish_would(private_kafka: str) -> None:
    """Bytes go to the aiokafka producer directly; the record (key, value, FastStream's
    content-type and correlation_id headers, the caller's, the trace context) is the one
    FastStream's publish makes (``reply_to`` forces FastStream's way)."""
    topic = f"direct-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=private_kafka)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 1, 1)])
    finally:
        await admin.close()
    broker = make_broker(ServiceSettings(kafka_bootstrap=private_kafka), "direct")
    assert isinstance(broker, TracedKafkaBroker)
    await broker.start()
    try:
        assert broker._direct_producer(b"x", {"key": b"k"}) is not None
        assert broker._direct_producer(b"x", {"reply_to": ""}) is None
        assert broker._direct_producer("text", {}) is None
        tracer = trace.get_tracer("test")
        with tracer.start_as_current_span("direct-root"):
            await broker.publish(b"fast", topic, key=b"k", headers={"h": "1"})
            await broker.publish(b"slow", topic, key=b"k", headers={"h": "1"}, reply_to="")
            future = await broker.publish(b"unconfirmed", topic, no_confirm=True)
            await future
            await broker.publish(b"given", topic, correlation_id="c-1")
    finally:
        await broker.stop()
    records = await read_topic(private_kafka, topic, count=4)
    assert [r.value for r in records] == [b"fast", b"slow", b"unconfirmed", b"given"]
    fast, slow, unconfirmed, given = ({k: v.decode() for k, v in r.headers} for r in records)
    assert records[0].key == records[1].key == b"k"
    assert set(fast) == set(slow) == {"content-type", "correlation_id", "h", "traceparent"}
    assert fast["content-type"] == slow["content-type"] == ""
    assert fast["h"] == slow["h"] == "1"
    assert fast["traceparent"].split("-")[1] == slow["traceparent"].split("-")[1]
    assert fast["correlation_id"]
    assert fast["correlation_id"] != slow["correlation_id"]
    assert set(unconfirmed) == {"content-type", "correlation_id", "traceparent"}
    assert given["correlation_id"] == "c-1"


async def test_a_publish_batch_sends_the_records_faststreams_would(
    private_kafka: str, span_exporter: InMemorySpanExporter
) -> None:
    """A batch of bytes goes to the aiokafka producer directly: the records are those
    FastStream's ``publish_batch`` makes (its correlation_id header, one for the batch, the
    caller's, the trace context; no content-type for bytes), in order on ONE partition of a
    multi-partition topic, and a batch beyond one producer batch (16 kB) goes out whole
    (FastStream's own raises). Options it does not handle (``reply_to``) take FastStream's
    way."""
    topic = f"direct-batch-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=private_kafka)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 3, 1)])
    finally:
        await admin.close()
    broker = make_broker(ServiceSettings(kafka_bootstrap=private_kafka), "direct-batch")
    assert isinstance(broker, TracedKafkaBroker)
    big = [f"big-{i:03d}-".encode() + b"x" * 1000 for i in range(40)]  # ~40 kB
    await broker.start()
    try:
        tracer = trace.get_tracer("test")
        with tracer.start_as_current_span("direct-root"):
            await broker.publish_batch(b"f1", b"f2", topic=topic, headers={"h": "1"})
            await broker.publish_batch(b"s1", b"s2", topic=topic, headers={"h": "1"}, reply_to="")
            future = await broker.publish_batch(*big, topic=topic, no_confirm=True)
            await future
            await broker.publish_batch(b"g1", topic=topic, partition=2, correlation_id="c-1")
    finally:
        await broker.stop()
    records = await read_topic(private_kafka, topic, count=45)
    by_value = {r.value: r for r in records}
    headers = {r.value: {k: v.decode() for k, v in r.headers} for r in records}
    assert len(records) == 45
    for batch in ([b"f1", b"f2"], [b"s1", b"s2"], big):
        assert len({by_value[v].partition for v in batch}) == 1  # one partition, in order
        offsets = [by_value[v].offset for v in batch]
        assert offsets == sorted(offsets)
        assert len({headers[v]["correlation_id"] for v in batch}) == 1  # one for the call
    assert set(headers[b"f1"]) == {"correlation_id", "h", "traceparent"}
    assert set(headers[b"s1"]) - {"reply_to"} == set(headers[b"f1"])
    assert headers[b"f1"]["h"] == headers[b"s1"]["h"] == "1"
    assert (
        headers[b"f1"]["traceparent"].split("-")[1] == headers[b"s1"]["traceparent"].split("-")[1]
    )
    assert headers[b"f1"]["correlation_id"] != headers[b"s1"]["correlation_id"]
    assert headers[b"g1"]["correlation_id"] == "c-1"
    assert by_value[b"g1"].partition == 2
