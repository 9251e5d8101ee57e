"""The bus against the real embedded broker, with the echo service in its own process."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from shared.client import PlatformClient
from shared.events import AlertRaised, AuditRecorded, decode
from shared.settings import ServiceSettings
from shared.topics import Topic
from tests.support.stack import ServiceProcess, produce, read_topic, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def echo(kafka: str, data_dir: Path) -> Iterator[ServiceProcess]:
    env = {
        "LLMOPS_KAFKA_BOOTSTRAP": kafka,
        "LLMOPS_DATA_DIR": str(data_dir),
        "LLMOPS_SPANS_FILE": str(data_dir / "spans.jsonl"),
        "LLMOPS_RETRY_BACKOFF_S": "0.01",
        "LLMOPS_HANDLER_ATTEMPTS": "2",
    }
    service = ServiceProcess("tests.support.echo_service", env, data_dir / "echo.log").start()
    yield service
    service.stop()


def applied(data_dir: Path, target: str) -> int:
    with sqlite3.connect(data_dir / "echo.db") as db:
        return int(
            db.execute("select count(*) from echo_applied where target = ?", (target,)).fetchone()[
                0
            ]
        )


async def alerts_caused_by(
    kafka: str, event_id: str, *, at_least: int = 1, timeout: float = 20
) -> list[AlertRaised]:
    """Every AlertRaised caused by event_id, read until at_least are seen (or timeout)."""
    found: list[AlertRaised] = []
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        records = await read_topic(kafka, Topic.ALERT_RAISED.value, count=10_000, timeout=1.5)
        found = [e for r in records if str((e := decode(r.value)).causation_id) == event_id]  # type: ignore[union-attr]
        if len(found) >= at_least:
            break
    return found  # type: ignore[return-value]


async def test_a_typed_event_crosses_processes_and_its_trace_continues(
    kafka: str, echo: ServiceProcess, data_dir: Path, span_exporter: InMemorySpanExporter
) -> None:
    tracer = trace.get_tracer("test")
    with tracer.start_as_current_span("test-root") as root:
        async with PlatformClient(ServiceSettings(kafka_bootstrap=kafka), "test") as client:
            sent = await client.publish(
                AuditRecorded(action="x", actor="t", allowed=True, target="traced")
            )
    trace_id = f"{root.get_span_context().trace_id:032x}"
    publish_span = next(s for s in span_exporter.get_finished_spans() if s.name.endswith("publish"))

    alerts = await alerts_caused_by(kafka, str(sent.event_id))
    assert len(alerts) == 1
    assert applied(data_dir, "traced") == 1

    spans_file = data_dir / "spans.jsonl"

    def read() -> list[dict] | None:  # the trace's spans, and the relay span linked to it
        if not spans_file.exists():
            return None
        lines = spans_file.read_text().splitlines()
        found = [json.loads(line) for line in lines if trace_id in line]
        return found if any(s["kind"] == "PRODUCER" for s in found) else None

    spans = wait_until(read, timeout=10)
    by_id = {s["span_id"]: s for s in spans}
    consumer = next(s for s in spans if s["kind"] == "CONSUMER")
    assert consumer["service"] == "echo"
    assert consumer["parent_span_id"] == f"{publish_span.get_span_context().span_id:016x}"
    # the follow-up event published through the outbox is still in the same trace: its
    # record carries the handler's span as parent, and the relay's producer span (one per
    # drain, a root of its own) links to it
    records = await read_topic(kafka, Topic.ALERT_RAISED.value, count=10_000, timeout=1.5)
    relayed = next(r for r in records if str(decode(r.value).causation_id) == str(sent.event_id))  # type: ignore[union-attr]
    traceparent = dict(relayed.headers)["traceparent"].decode()
    assert traceparent.split("-")[1:3] == [trace_id, consumer["span_id"]]
    producers = [s for s in spans if s["kind"] == "PRODUCER"]
    assert producers, "no relay span links to the relayed AlertRaised"
    assert all(
        {"trace_id": trace_id, "span_id": consumer["span_id"]} in s["links"] for s in producers
    )
    assert all(s["trace_id"] == trace_id for s in by_id.values() if s["kind"] != "PRODUCER")


async def test_poison_goes_to_dlq_while_good_messages_pass(
    kafka: str, echo: ServiceProcess, data_dir: Path
) -> None:
    good = [
        AuditRecorded(action="x", actor="t", allowed=True, target=f"good-{i}") for i in range(3)
    ]
    poison = [
        b"\xde\xad\xbe\xef",
        b'{"event_type": "llmops.audit.recorded", "schema_version": 5}',
        AuditRecorded(action="fail", actor="t", allowed=True, target="bad").to_bytes(),
    ]
    before = len(await read_topic(kafka, Topic.AUDIT_RECORDED.dlq, count=10_000, timeout=1))
    await produce(
        kafka,
        Topic.AUDIT_RECORDED.value,
        [
            good[0].to_bytes(),
            poison[0],
            good[1].to_bytes(),
            poison[1],
            poison[2],
            good[2].to_bytes(),
        ],
        key=b"same-partition",
        headers=[("origin", b"test")],
    )
    wait_until(lambda: all(applied(data_dir, e.target) == 1 for e in good), timeout=30)
    dead = await read_topic(kafka, Topic.AUDIT_RECORDED.dlq, count=before + 3, timeout=20)
    mine = dead[before:]
    assert [r.value for r in mine] == poison
    reasons = [dict(r.headers)["x-llmops-dlq-reason"].decode() for r in mine]
    assert reasons == ["undecodable", "unknown-version", "handler-failed"]
    assert all(dict(r.headers)["origin"] == b"test" for r in mine)
    assert applied(data_dir, "bad") == 0


async def test_duplicate_delivery_is_applied_once(
    kafka: str, echo: ServiceProcess, data_dir: Path
) -> None:
    event = AuditRecorded(action="x", actor="t", allowed=True, target="dup")
    await produce(kafka, Topic.AUDIT_RECORDED.value, [event.to_bytes()] * 3)
    await alerts_caused_by(kafka, str(event.event_id))
    wait_until(lambda: applied(data_dir, "dup") == 1, timeout=10)
    await asyncio.sleep(1.0)  # give any wrong second application time to show
    assert applied(data_dir, "dup") == 1
    assert len(await alerts_caused_by(kafka, str(event.event_id), at_least=2, timeout=3)) == 1


async def test_outbox_survives_a_kill_between_commit_and_publish(
    kafka: str, echo: ServiceProcess, data_dir: Path
) -> None:
    event = AuditRecorded(action="crash-after-commit", actor="t", allowed=True, target="crash")
    await produce(kafka, Topic.AUDIT_RECORDED.value, [event.to_bytes()])
    assert echo.wait_exit(30) == 17  # died after the state commit, before the relay ran
    assert applied(data_dir, "crash") == 1
    assert await alerts_caused_by(kafka, str(event.event_id), timeout=2) == []

    echo.start()  # restarted: relays the outbox; the redelivered message hits the inbox
    alerts = await alerts_caused_by(kafka, str(event.event_id))
    assert len(alerts) == 1
    await asyncio.sleep(1.0)
    assert applied(data_dir, "crash") == 1
    assert len(await alerts_caused_by(kafka, str(event.event_id), at_least=2, timeout=3)) == 1
