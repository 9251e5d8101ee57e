"""The serving hops on their own broker: the embedded stack's default layout, real brokers.

A durable log (tansu on the s3 engine over the log store) and, beside it, a second tansu in
memory (``EmbeddedLog(hot_bootstrap=...)``, as `llmops up` starts them). A real worker (its
app in-process, a fake engine) and a gateway-style requester (the bus publishes the request,
the ``ReplyRouter`` reads replies and heartbeats): the request, the replies and the heartbeats
travel on the memory broker, the worker's copy of the result (``inference.completed``) lands
on the durable log, and no topic is on the wrong broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from services.serving.gateway.adapters.replies import ReplyRouter
from services.serving.gateway.workers import WorkerDirectory
from services.serving.wire import HEARTBEAT_TOPIC
from services.serving.worker.app import build
from services.serving.worker.config import WorkerSettings
from shared.events import InferenceCompleted, InferenceRequested, decode
from shared.runtime import build_runtime
from shared.settings import ServiceSettings
from shared.stack.log import EmbeddedLog
from shared.topics import CANCEL_TOPIC, Topic
from shared.wire import Chunk, create_channel, reply_topic
from tests.serving.fakes import FakeLoader
from tests.support.stack import free_port, read_topic, require_s3rver, until

pytestmark = pytest.mark.integration


@pytest.fixture
def two_brokers(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(durable log, serving hops' memory broker), as `llmops up` starts them."""
    require_s3rver()
    log = EmbeddedLog(
        f"127.0.0.1:{free_port()}",
        tmp_path / "log",
        tmp_path / "logs",
        hot_bootstrap=f"127.0.0.1:{free_port()}",
    ).start()
    try:
        assert log.durable
        assert log.hot_broker is not None
        yield log.bootstrap, log.ephemeral_bootstrap
    finally:
        log.stop()


async def _topics(bootstrap: str) -> set[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


async def test_request_and_replies_on_the_memory_broker_result_on_the_durable_log(
    two_brokers: tuple[str, str], tmp_path: Path
) -> None:
    durable, hops = two_brokers
    common = {
        "kafka_bootstrap": durable,
        "kafka_ephemeral_bootstrap": hops,
        "require_authority": False,
    }
    worker_settings = WorkerSettings(
        **common,  # type: ignore[arg-type]
        data_dir=tmp_path / "worker",
        bootstrap_model="m",
        bootstrap_path="/boot",
        heartbeat_s=0.5,
    )
    worker_runtime, worker_app = build(worker_settings, loader=FakeLoader())
    assert worker_runtime.bus.hot_broker is not None  # the hops have a broker of their own

    gateway = build_runtime(
        ServiceSettings(**common, data_dir=tmp_path / "gateway"),  # type: ignore[arg-type]
        "gateway",
    )
    replies_topic = reply_topic("gw-hops")
    await create_channel(hops, replies_topic)
    directory = WorkerDirectory(30.0)
    router = ReplyRouter(hops, replies_topic, HEARTBEAT_TOPIC, directory)

    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(worker_app.start_lifespan_context())
        await until(worker_runtime.ready.is_set, timeout=60)
        await gateway.broker.start()
        stack.push_async_callback(gateway.broker.stop)
        await gateway.bus.start()
        stack.push_async_callback(gateway.bus.stop)
        await router.start()
        stack.push_async_callback(router.stop)

        # the worker's heartbeats reach the gateway over the memory broker
        worker_id = worker_runtime.state["worker_id"]
        await until(
            lambda: worker_id in {b.worker_id for b in directory.live(time.time())}, timeout=30
        )

        queue = router.open("r-hops")
        await asyncio.sleep(1.5)  # the worker's request consumer joins its group
        request = InferenceRequested(
            request_id="r-hops",
            model="m",
            prompt="one two three",
            reply_to=replies_topic,
            stream=True,
        )
        await gateway.bus.publish(request)
        got: list[object] = []
        while not any(isinstance(item, InferenceCompleted) for item in got):
            got.append(await asyncio.wait_for(queue.get(), timeout=60))
        assert any(isinstance(item, Chunk) for item in got)
        done = got[-1]
        assert isinstance(done, InferenceCompleted)
        assert done.request_id == "r-hops"

    # the result's copy is on the durable log
    completed = await read_topic(durable, Topic.INFERENCE_COMPLETED.value, count=1)
    assert [decode(r.value).request_id for r in completed] == ["r-hops"]  # type: ignore[attr-defined]
    # every topic on its broker: the hops in memory, their DLQs and the rest on the log
    on_log, in_memory = await _topics(durable), await _topics(hops)
    hop_names = {
        Topic.INFERENCE_REQUESTED.value,
        HEARTBEAT_TOPIC,
        CANCEL_TOPIC,
        replies_topic,
    }
    assert hop_names <= in_memory
    assert not hop_names & on_log
    assert {Topic.INFERENCE_COMPLETED.value, Topic.INFERENCE_REQUESTED.dlq} <= on_log
    assert Topic.INFERENCE_COMPLETED.value not in in_memory
    assert Topic.INFERENCE_REQUESTED.dlq not in in_memory
