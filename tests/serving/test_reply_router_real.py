"""The gateway's reply router on the real embedded broker, in the shared background loop:
a reply on its topic reaches the waiting request, a heartbeat reaches the worker directory,
and stop() ends the loop. (The vLLM suites cover it too, but they are slow.)"""

from __future__ import annotations

import time
import uuid

import pytest

from services.serving.gateway.adapters.replies import ReplyRouter
from services.serving.gateway.workers import WorkerDirectory
from services.serving.wire import ensure_serving_topics
from shared.events.serving import InferenceCompleted, WorkerHeartbeat
from shared.topics import Topic
from shared.wire import create_channel, delete_reply_topic
from tests.support.stack import produce, until

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
