"""Read every byte of a set of topics, and search files and records for planted values."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from shared.bus.offsets import log_end_offsets
from shared.events import EventDecodeError, decode


async def topic_bytes(bootstrap: str, topics: list[str]) -> dict[str, list[bytes]]:
    """Every record (key, value, header values) of ``topics``, from offset 0 to the end."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    found: dict[str, list[bytes]] = {topic: [] for topic in topics}
    try:
        await consumer._client.force_metadata_update()
        partitions = [
            TopicPartition(t, p)
            for t in topics
            for p in sorted(consumer.partitions_for_topic(t) or ())
        ]
        ends = await log_end_offsets(consumer, partitions)
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        pending = {tp for tp in partitions if ends[tp] > 0}
        while pending:
            batch = await consumer.getmany(timeout_ms=1000)
            for tp, records in batch.items():
                for record in records:
                    parts = [record.key or b"", record.value or b""]
                    parts += [value or b"" for _, value in (record.headers or ())]
                    found[tp.topic].append(b"\n".join(parts))
                if await consumer.position(tp) >= ends[tp]:
                    pending.discard(tp)
            if not batch:
                pending = {tp for tp in pending if await consumer.position(tp) < ends[tp]}
    finally:
        await consumer.stop()
    return found


def needles(values: list[str]) -> dict[str, list[bytes]]:
    """Each value as raw UTF-8 and as it appears inside JSON strings."""
    return {v: sorted({v.encode(), json.dumps(v)[1:-1].encode()}) for v in values}


def search(blobs: dict[str, bytes], values: list[str]) -> list[tuple[str, str]]:
    hits = []
    for where, blob in blobs.items():
        for value, forms in needles(values).items():
            if any(form in blob for form in forms):
                hits.append((where, value))
    return hits


def file_blobs(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


async def events_matching(
    bootstrap: str, topic: str, predicate: Callable[[Any], bool], count: int, timeout: float
) -> list[Any]:
    """The first ``count`` decoded events of ``topic`` (from the start) matching ``predicate``."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    found: list[Any] = []
    deadline = asyncio.get_running_loop().time() + timeout
    try:
        while len(found) < count and asyncio.get_running_loop().time() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for record in records:
                    try:  # the session's broker is shared: other tests put garbage on topics
                        event = decode(record.value)
                    except EventDecodeError:
                        continue
                    if predicate(event):
                        found.append(event)
    finally:
        await consumer.stop()
    return found


async def skip_history(bootstrap: str, groups: list[str]) -> None:
    """Commit the end of every topic for ``groups``.

    A service process started next in these (fresh) groups consumes what is produced from
    now on, not what earlier tests of the session left in the broker.
    """
    from shared.topics import Topic

    for group in groups:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
        )
        await consumer.start()
        try:
            await consumer._client.force_metadata_update()
            partitions = [
                TopicPartition(t.value, p)
                for t in Topic
                for p in sorted(consumer.partitions_for_topic(t.value) or ())
            ]
            ends = await log_end_offsets(consumer, partitions)
            await consumer.commit(dict(ends))
        finally:
            await consumer.stop()
