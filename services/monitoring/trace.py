"""The chain of events of one loop run: every event carrying a correlation id, in order."""

from __future__ import annotations

import uuid
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from shared.bus.offsets import log_end_offsets
from shared.events import EventDecodeError, decode
from shared.settings import kafka_client_options
from shared.topics import Topic, is_ephemeral


async def collect(
    bootstrap: str, correlation_id: uuid.UUID, ephemeral_bootstrap: str | None = None
) -> list[dict[str, Any]]:
    """Read every catalogue topic from its start to its current end (one consumer, no group
    per broker: the serving hops on ``ephemeral_bootstrap`` when they live apart)."""
    if not ephemeral_bootstrap or ephemeral_bootstrap == bootstrap:
        found = await _collect(bootstrap, correlation_id, set(Topic))
    else:
        hot = {t for t in Topic if is_ephemeral(t.value)}
        found = await _collect(bootstrap, correlation_id, set(Topic) - hot)
        found += await _collect(ephemeral_bootstrap, correlation_id, hot)
    return sorted(found, key=lambda r: (r["occurred_at"], r["topic"]))


async def _collect(
    bootstrap: str, correlation_id: uuid.UUID, topics: set[Topic]
) -> list[dict[str, Any]]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        **kafka_client_options(),  # type: ignore[arg-type]
    )
    await consumer.start()
    found: list[dict[str, Any]] = []
    try:
        names = set(await consumer.topics())
        parts = [
            TopicPartition(t.value, p)
            for t in Topic
            if t in topics and t.value in names
            for p in sorted(consumer.partitions_for_topic(t.value) or ())
        ]
        if not parts:
            return []
        ends = await log_end_offsets(consumer, parts)
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        pending = {tp for tp in parts if ends[tp] > 0}
        for tp in list(pending):
            if await consumer.position(tp) >= ends[tp]:
                pending.discard(tp)
        while pending:
            batch = await consumer.getmany(timeout_ms=500, max_records=5000)
            for tp, records in batch.items():
                for record in records:
                    if record.offset + 1 >= ends[tp]:
                        pending.discard(tp)
                    if str(correlation_id).encode() not in (record.value or b""):
                        continue  # cheap filter before decoding
                    try:
                        event = decode(record.value, expected=Topic(tp.topic).event)
                    except EventDecodeError:
                        continue
                    if event.correlation_id == correlation_id:
                        found.append(_row(tp.topic, event, record))
    finally:
        await consumer.stop()
    return found


def _row(topic: str, event: Any, record: Any) -> dict[str, Any]:
    headers = {k: v.decode(errors="replace") for k, v in (record.headers or ())}
    traceparent = headers.get("traceparent", "")
    return {
        "occurred_at": event.occurred_at.isoformat(),
        "topic": topic,
        "event_type": event.EVENT_TYPE,
        "event_id": str(event.event_id),
        "causation_id": str(event.causation_id) if event.causation_id else None,
        "producer": event.producer,
        "trace_id": traceparent.split("-")[1] if traceparent.count("-") >= 3 else None,
    }


def tree(rows: list[dict[str, Any]]) -> list[tuple[int, dict[str, Any]]]:
    """Rows with their depth in the causation chain (an event under the event that caused it)."""
    by_id = {r["event_id"]: r for r in rows}
    children: dict[str | None, list[dict[str, Any]]] = {}
    for row in rows:
        parent = row["causation_id"] if row["causation_id"] in by_id else None
        children.setdefault(parent, []).append(row)
    out: list[tuple[int, dict[str, Any]]] = []

    def walk(parent: str | None, depth: int) -> None:
        for row in children.get(parent, []):
            out.append((depth, row))
            walk(row["event_id"], depth + 1)

    walk(None, 0)
    return out
