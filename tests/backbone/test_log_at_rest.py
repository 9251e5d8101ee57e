"""The durable log at rest, with the real broker: record batches past their topic's retention.ms
are deleted (consumers, producers, a restarted broker and group offsets carry on over the
hole), and nothing a producer sent is on disk in clear."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from shared.bus.offsets import log_end_offsets
from shared.stack.log import EmbeddedLog
from tests.backbone.test_durable_log import read_all
from tests.support.stack import free_port, require_s3rver, wait_until

pytestmark = pytest.mark.integration

SHORT, FOREVER = "rest.short", "rest.forever"


@pytest.fixture
def durable_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[EmbeddedLog]:
    require_s3rver()
    monkeypatch.setenv("LLMOPS_LOG_SWEEP_INTERVAL_S", "0.5")  # the store reads its environment
    log = EmbeddedLog(f"127.0.0.1:{free_port()}", tmp_path / "log", tmp_path / "logs").start()
    assert log.durable
    yield log
    log.stop()


def batches(log: EmbeddedLog, topic: str) -> list[Path]:
    return sorted(
        log.storage_dir.glob(
            f"tansu/clusters/*/topics/{topic}/partitions/*/records/*.batch._S3rver_object"
        )
    )


async def create_topics(bootstrap: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [
                NewTopic(SHORT, 1, 1, topic_configs={"retention.ms": "60000"}),
                NewTopic(FOREVER, 1, 1),
            ]
        )
    finally:
        await admin.close()


async def produce(bootstrap: str, topic: str, values: list[bytes]) -> list[int]:
    """One batch per value (each send awaited); returns their offsets."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        return [
            (await producer.send_and_wait(topic, value, partition=0)).offset for value in values
        ]
    finally:
        await producer.stop()


async def consume(
    bootstrap: str, topic: str, count: int, group: str | None
) -> list[tuple[int, bytes]]:
    """``count`` records (offset, value) as ``group`` (committed) or from the beginning."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=50,
    )
    await consumer.start()
    got: list[tuple[int, bytes]] = []
    try:
        async with asyncio.timeout(60):
            while len(got) < count:
                fetched = await consumer.getmany(timeout_ms=500, max_records=count - len(got))
                for records in fetched.values():
                    got += [(r.offset, r.value) for r in records if r.value is not None]
        if group:
            await consumer.commit()
    finally:
        await consumer.stop()
    return got


def age(files: list[Path], seconds: float) -> None:
    then = time.time() - seconds
    for file in files:
        os.utime(file, (then, then))


def test_batches_past_retention_are_deleted_and_the_log_carries_on(
    durable_log: EmbeddedLog,
) -> None:
    bootstrap = durable_log.bootstrap
    asyncio.run(create_topics(bootstrap))
    old = [b"old-%d" % i for i in range(5)]
    assert asyncio.run(produce(bootstrap, SHORT, old)) == [0, 1, 2, 3, 4]
    asyncio.run(produce(bootstrap, FOREVER, old))
    # a group consumes two and commits offset 2
    assert asyncio.run(consume(bootstrap, SHORT, 2, "rest.group")) == [(0, old[0]), (1, old[1])]
    assert len(batches(durable_log, SHORT)) == 5

    # every batch two minutes old: past SHORT's 60 s retention; FOREVER has none
    age(batches(durable_log, SHORT) + batches(durable_log, FOREVER), 120)
    wait_until(lambda: not batches(durable_log, SHORT), timeout=60, interval=0.2)
    assert len(batches(durable_log, FOREVER)) == 5  # no retention.ms: kept

    # producers continue after the high watermark; the group resumes at the first survivor
    new = [b"new-%d" % i for i in range(3)]
    assert asyncio.run(produce(bootstrap, SHORT, new)) == [5, 6, 7]
    assert asyncio.run(consume(bootstrap, SHORT, 3, "rest.group")) == list(
        zip([5, 6, 7], new, strict=True)
    )
    # a reader from offset 0 starts at the first surviving batch
    assert asyncio.run(consume(bootstrap, SHORT, 3, None)) == list(zip([5, 6, 7], new, strict=True))

    # a restarted broker and store: offsets and groups survive the hole
    durable_log.stop()
    durable_log.start()
    later = [b"later-%d" % i for i in range(2)]
    assert asyncio.run(produce(bootstrap, SHORT, later)) == [8, 9]
    assert asyncio.run(consume(bootstrap, SHORT, 2, "rest.group")) == list(
        zip([8, 9], later, strict=True)
    )
    assert sorted(asyncio.run(read_all(bootstrap, FOREVER))) == sorted(old)


def test_nothing_produced_is_on_disk_in_clear(durable_log: EmbeddedLog) -> None:
    marker = b"Grace Whitaker <grace.whitaker@example.com> marker-%d" % os.getpid()
    asyncio.run(create_topics(durable_log.bootstrap))
    asyncio.run(produce(durable_log.bootstrap, FOREVER, [marker, b"second " + marker]))
    assert batches(durable_log, FOREVER)
    files = [p for p in durable_log.storage_dir.rglob("*") if p.is_file()]
    assert files
    for part in (marker, b"Grace Whitaker", b"grace.whitaker@example.com"):
        assert not [p for p in files if part in p.read_bytes()], f"{part!r} stored in clear"
    # the key lives outside the log directory, readable by its owner only
    assert durable_log.key_file is not None
    assert durable_log.storage_dir.resolve() not in durable_log.key_file.resolve().parents
    assert durable_log.key_file.stat().st_mode & 0o777 == 0o600
    # and the broker reads it back, also after a restart
    values = [v for _, v in asyncio.run(consume(durable_log.bootstrap, FOREVER, 2, None))]
    assert values == [marker, b"second " + marker]
    durable_log.stop()
    durable_log.start()
    assert sorted(asyncio.run(read_all(durable_log.bootstrap, FOREVER))) == sorted(values)


def test_a_log_under_another_key_is_refused_clearly(durable_log: EmbeddedLog) -> None:
    asyncio.run(create_topics(durable_log.bootstrap))
    durable_log.stop()
    assert durable_log.key_file is not None
    durable_log.key_file.write_text(os.urandom(32).hex() + "\n")
    with pytest.raises(RuntimeError, match="log store"):
        durable_log.start()
    assert "does not decrypt under this key" in (durable_log.log_dir / "log-store.log").read_text()


def test_log_end_is_kept_when_every_batch_is_deleted(durable_log: EmbeddedLog) -> None:
    """A partition whose every batch is gone still answers its end (the watermark stays)."""
    asyncio.run(create_topics(durable_log.bootstrap))
    asyncio.run(produce(durable_log.bootstrap, SHORT, [b"a", b"b"]))
    age(batches(durable_log, SHORT), 120)
    wait_until(lambda: not batches(durable_log, SHORT), timeout=60, interval=0.2)

    async def end() -> int:
        consumer = AIOKafkaConsumer(bootstrap_servers=durable_log.bootstrap, fetch_max_wait_ms=50)
        await consumer.start()
        try:
            tp = TopicPartition(SHORT, 0)
            return (await log_end_offsets(consumer, [tp]))[tp]
        finally:
            await consumer.stop()

    assert asyncio.run(end()) == 2
