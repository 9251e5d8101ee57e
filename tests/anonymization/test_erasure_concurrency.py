"""Erasures and ingests at the same time, on the service's real SQLite file: no "database is
locked".

A bus handler writes in a worker thread and its transaction commits back on the event loop,
so a session holds SQLite's write lock across ``await``s. A write that waited for the lock on
the loop thread (the outbox relay's delete, an inbox insert) blocked the loop, the holder could
not commit: both stalled for the whole busy timeout, then "database is locked" (an erasure
request answered 500, an erasure dead-lettered). ``shared.storage.db.hold_write_lock`` waits
for the lock off the loop.
"""

from __future__ import annotations

import asyncio
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from faststream.kafka import TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage
from sqlalchemy import func
from sqlmodel import Session, select

import shared.storage.db as db
from services.anonymization.adapters.api import build_api
from services.anonymization.app import build
from services.anonymization.config import AnonymizationSettings
from shared.bus.outbox import OutboxRelay
from shared.bus.store import InboxEntry, OutboxEntry, outbox_entry
from shared.events import ErasureCompleted, ErasureRequested, RecordsIngested, decode
from shared.events.ingest import Record
from shared.keys import KeyRegistry, KeyView
from shared.settings import ServiceSettings
from shared.topics import Topic
from tests.anonymization.fakes import FakeEngine

pytestmark = pytest.mark.handlers
ADMIN = "erasure-concurrency-admin-key"
PEOPLE = [f"Person{i} Name" for i in range(40)]
# short, so a stall fails the test in seconds; a wait behind a live holder is far shorter
BUSY_TIMEOUT_S = 5


@pytest.fixture(autouse=True)
def short_busy_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(db, "SQLITE_BUSY_TIMEOUT_S", BUSY_TIMEOUT_S, raising=False)


def _ingested(batch: int, index: int) -> RecordsIngested:
    records = [
        Record(record_id=f"b{batch}-{index}-{i}", text=f"{p} wrote from p{i}@example.org")
        for i, p in enumerate(PEOPLE[:20])
    ]
    return RecordsIngested(
        dataset="tickets",
        request_id=uuid.uuid4(),
        batch_index=index,
        records=records,
        count=len(records),
    )


async def test_concurrent_erasures_and_ingests_never_find_the_database_locked(
    data_dir: Path,
) -> None:
    settings = AnonymizationSettings(
        data_dir=data_dir,
        kafka_bootstrap="127.0.0.1:1",
        api_port=0,
        pseudonym_key="cd" * 32,
        handler_attempts=1,  # a failed handler is dead-lettered at once: seen below
        require_authority=False,
    )
    runtime, _app = build(settings, engine=FakeEngine(dict.fromkeys(PEOPLE, "PERSON")))
    completed: list[ErasureCompleted] = []
    dead: list[str] = []

    @runtime.broker.subscriber(Topic.ERASURE_COMPLETED.value, group_id="test-completed")
    async def on_completed(message: KafkaMessage) -> None:
        completed.append(decode(message.body))  # type: ignore[arg-type]

    for topic in (Topic.RECORDS_INGESTED, Topic.ERASURE_REQUESTED):

        @runtime.broker.subscriber(topic.dlq, group_id=f"test-dlq-{topic.name}")
        async def on_dead(message: KafkaMessage) -> None:
            dead.append(str(dict(message.headers).get("x-llmops-dlq-error", message.headers)))

    api = build_api(
        runtime,
        runtime.state["vault_for"],
        KeyRegistry(ServiceSettings(require_authority=False), KeyView(lambda: ADMIN)),
        runtime.state["keys"].subject_ref,
        rate_per_minute=10**6,
    )
    keys = runtime.state["keys"]

    async def ingest(batches: int) -> None:
        for b in range(batches):
            events = [_ingested(b, i).to_bytes() for i in range(5)]
            await broker.publish_batch(*events, topic=Topic.RECORDS_INGESTED.value)

    async def erase_by_command(rounds: int) -> None:
        for r in range(rounds):
            refs = [keys.subject_ref(f"p{i}@example.org") for i in range(r, r + 3)]
            events = [ErasureRequested(subject_ref=ref).to_bytes() for ref in refs]
            await broker.publish_batch(*events, topic=Topic.ERASURE_REQUESTED.value)

    async def erase_by_api(requests: int) -> list[int]:
        transport = httpx.ASGITransport(app=api)
        async with httpx.AsyncClient(transport=transport, base_url="http://anon") as http:
            answers = []
            for i in range(requests):
                answer = await http.post(
                    "/v1/erasures",
                    json={"subject": PEOPLE[i % len(PEOPLE)]},
                    headers={"x-api-key": ADMIN},
                    timeout=120,
                )
                answers.append(answer.status_code)
            return answers

    async with TestKafkaBroker(runtime.broker) as broker:
        await runtime.bus.start()  # the outbox relay, draining as rows are committed
        try:
            _, _, answers = await asyncio.gather(ingest(6), erase_by_command(10), erase_by_api(20))
            assert runtime.bus.relay is not None
            await runtime.bus.relay.drain()
        finally:
            await runtime.bus.stop()

    assert answers == [202] * 20
    assert dead == []
    assert runtime.engine is not None
    with Session(runtime.engine) as session:
        inbox = session.exec(
            select(InboxEntry.event_type, func.count()).group_by(InboxEntry.event_type)
        )
        applied = dict(inbox.all())
        left = session.exec(select(func.count()).select_from(OutboxEntry)).one()
    assert applied[RecordsIngested.EVENT_TYPE] == 6 * 5
    # 30 by command; the 20 the API published went through the relay to the same handler
    assert applied[ErasureRequested.EVENT_TYPE] == 30 + 20
    assert len(completed) == 50
    assert left == 0


class _CountingPool(ThreadPoolExecutor):
    """``hold_write_lock``'s waiter pool, counting the waits handed to it: a test knows the
    relay is blocked on the lock (not merely past its publish) before the holder commits."""

    waits = 0

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        type(self).waits += 1
        return super().submit(fn, *args, **kwargs)


async def test_the_relay_waits_for_the_write_lock_off_the_event_loop_during_erasure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A transaction holds the write lock across an ``await`` (as a bus handler's does) while
    the relay deletes what it published: the relay waits in a thread, the loop goes on, the
    holder commits, the relay finishes. Waiting on the loop, it stalled till the busy
    timeout and failed."""
    engine = db.make_engine(f"sqlite:///{tmp_path / 'relay.db'}")
    with Session(engine) as session:
        session.add(
            outbox_entry(ErasureRequested(subject_ref="s" * 32), Topic.ERASURE_REQUESTED, None)
        )
        session.commit()
    published = asyncio.Event()

    class Broker:
        async def publish(self, *_args: Any, **_kwargs: Any) -> None:
            published.set()

    relay = OutboxRelay(Broker(), engine)  # type: ignore[arg-type]
    monkeypatch.setattr(db, "_LOCK_WAITERS", _CountingPool(max_workers=1))
    _CountingPool.waits = 0
    with Session(engine) as holder:
        # a handler's write in a worker thread: this transaction now holds the lock
        holder.add(InboxEntry(consumer="c", event_id="e", event_type="t"))
        await asyncio.to_thread(holder.flush)
        draining = asyncio.create_task(relay.drain())
        await published.wait()
        for _ in range(1000):  # until the relay waits for the lock, in the pool's thread
            if _CountingPool.waits:
                break
            await asyncio.sleep(0.01)
        assert _CountingPool.waits == 1  # the relay is blocked at its delete now
        holder.commit()  # runs only if the relay's wait left the loop free
    assert await draining == 1
    with Session(engine) as session:
        assert session.exec(select(func.count()).select_from(OutboxEntry)).one() == 0
