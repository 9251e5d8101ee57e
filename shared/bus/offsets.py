"""Offsets of a partition as the embedded broker and a real Kafka both answer them right."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, TopicPartition

BEYOND_THE_END = 1 << 62


async def log_end_offsets(
    consumer: AIOKafkaConsumer, parts: list[TopicPartition], timeout_s: float = 10.0
) -> dict[TopicPartition, int]:
    """The end offset (high watermark) of each partition, as Fetch responses carry it.

    ``consumer`` must have no subscription: its assignment is replaced. ListOffsets(latest),
    what ``end_offsets`` asks, is wrong on the embedded broker (tansu 0.6.0, both engines):
    it answers the base offset + 1 of the batch it finds most recently modified, i.e. too
    small as soon as a batch holds more than one record, and on the durable engine (whose
    store has a one-second clock) the first batch of the last second (docs/backbone.md).
    A Fetch at an offset past the end returns no record and the true high watermark, so
    this costs no data transfer. The larger of the two answers wins (a real Kafka answers
    both right; a partition whose fetch does not answer in time keeps ListOffsets').
    """
    if not parts:
        return {}
    listed = await consumer.end_offsets(parts)
    consumer.assign(parts)
    for tp in parts:
        consumer.seek(tp, BEYOND_THE_END)
    deadline = asyncio.get_running_loop().time() + timeout_s
    while any(consumer.highwater(tp) is None for tp in parts):
        if asyncio.get_running_loop().time() > deadline:
            break
        await consumer.getmany(timeout_ms=100)
    return {tp: max(listed[tp], consumer.highwater(tp) or 0) for tp in parts}
