"""The gateway's reply router on the real embedded broker, in the shared background loop:
a reply on its topic reaches the waiting request, a heartbeat reaches the worker directory,
and stop() ends the loop. (The vLLM suites cover it too, but they are slow.)"""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from services.serving.gateway.adapters.replies import ReplyRouter
from services.serving.gateway.workers import WorkerDirectory
from services.serving.wire import ensure_serving_topics
from shared.events.serving import InferenceCompleted, WorkerHeartbeat
from shared.topics import Topic
from shared.wire import create_channel, delete_reply_topic
from tests.support.stack import list_topics, produce, until

pytestmark = pytest.mark.integration


async def test_replies_and_heartbeats_are_routed_on_a_real_broker(kafka: str) -> None:
    await ensure_serving_topics(kafka)
    topic = f"llmops.inference.replies.test-{uuid.uuid4().hex[:8]}"
    await create_channel(kafka, topic)
    directory = WorkerDirectory()
    router = ReplyRouter(kafka, topic, Topic.WORKER_HEARTBEAT.value, directory)
    await router.start()
    try:
        queue = router.open("r1")
        done = InferenceCompleted(request_id="r1", model="m", model_version="1")
        await produce(kafka, topic, [done.to_bytes()])
        beat = WorkerHeartbeat(worker_id=f"w-{uuid.uuid4().hex[:6]}")
        await produce(kafka, Topic.WORKER_HEARTBEAT.value, [beat.to_bytes()])
        await until(lambda: queue.qsize() == 1, timeout=30)
        assert isinstance(queue.get_nowait(), InferenceCompleted)
        await until(
            lambda: beat.worker_id in {b.worker_id for b in directory.live(time.time())},
            timeout=30,
        )
        assert router.alive()
    finally:
        await router.stop()
        await delete_reply_topic(kafka, topic)
    assert not router.alive()


async def test_heartbeats_sent_before_the_start_are_known_when_it_returns(kafka: str) -> None:
    await ensure_serving_topics(kafka)
    topic = f"llmops.inference.replies.test-{uuid.uuid4().hex[:8]}"
    await create_channel(kafka, topic)
    ids = [f"w-{uuid.uuid4().hex[:6]}" for _ in range(6)]
    for batch in (ids[:3], ids[3:]):  # two batches of several records each
        beats = [WorkerHeartbeat(worker_id=worker_id).to_bytes() for worker_id in batch]
        await produce(kafka, Topic.WORKER_HEARTBEAT.value, beats)
    directory = WorkerDirectory()
    router = ReplyRouter(kafka, topic, Topic.WORKER_HEARTBEAT.value, directory)
    await router.start()  # reads up to the true end of the heartbeats before it returns
    try:
        assert set(ids) <= {b.worker_id for b in directory.live(time.time())}
        assert router.pace.current == router.pace.idle_ms  # nothing in flight: idle pace
        router.open("r1")
        assert router.pace.current == router.pace.busy_ms  # a request waits: fast at once
        fetcher = router._consumer._fetcher  # type: ignore[union-attr]
        assert fetcher._fetch_max_wait_ms == router.pace.busy_ms  # what aiokafka reads
    finally:
        await router.stop()
        await delete_reply_topic(kafka, topic)


async def test_a_reply_topic_deleted_under_a_waiting_fetch_stays_deleted(kafka: str) -> None:
    """tansu creates a topic again when a fetch that waited on it answers after its delete.
    A gateway stopped while its reply router's fetch held only the reply topic (its heartbeat
    records still buffered) left the topic behind; the delete now looks again once the
    reader's fetch wait is over and deletes it once more."""
    topic = f"llmops.inference.replies.test-{uuid.uuid4().hex[:8]}"
    await create_channel(kafka, topic)
    wait_ms = 500  # long enough that the reader's last fetch still waits at the delete
    reader = AIOKafkaConsumer(bootstrap_servers=kafka, group_id=None, fetch_max_wait_ms=wait_ms)
    await reader.start()
    partition = TopicPartition(topic, 0)
    reader.assign([partition])
    reader.seek(partition, 0)
    await reader.getmany(timeout_ms=50)  # nothing there: a fetch now waits on the broker
    await reader.stop()
    await delete_reply_topic(kafka, topic, fetch_wait_s=wait_ms / 1000)
    await asyncio.sleep(2 * wait_ms / 1000)  # any fetch still waiting has answered
    assert topic not in await list_topics(kafka)
