"""The serving hops on their own broker: the embedded stack's default layout, real brokers.

A durable log (tansu on the s3 engine over the log store) and, beside it, a second tansu in
memory (``EmbeddedLog(hot_bootstrap=...)``, as `llmops up` starts them). A real worker and a
real gateway (their apps in-process, a fake engine), a streamed completion over HTTP: the
request, the chunk frames and the heartbeats travel on the memory broker, the worker's copy
of the result (``inference.completed``) lands on the durable log, and no topic is on the
wrong broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from services.serving.gateway.app import build as build_gateway
from services.serving.gateway.config import GatewaySettings
from services.serving.wire import HEARTBEAT_TOPIC
from services.serving.worker.app import build
from services.serving.worker.config import WorkerSettings
from shared.events import decode
from shared.stack.log import EmbeddedLog
from shared.topics import CANCEL_TOPIC, Topic
from shared.wire import reply_topic
from tests.serving.fakes import FakeLoader
from tests.support.stack import free_port, list_topics, read_topic, require_s3rver, until

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
        log_linger_ms=1000,
    )
    worker_runtime, worker_app = build(worker_settings, loader=FakeLoader())
    assert worker_runtime.bus.hot_broker is not None  # the hops have a broker of their own

    admin_key = "llm-hops-0123456789abcdef"
    _gateway_runtime, gateway = build_gateway(
        GatewaySettings(
            **common,  # type: ignore[arg-type]
            data_dir=tmp_path / "gateway",
            admin_key=admin_key,
            id="gw-hops",
        )
    )
    replies_topic = reply_topic("gw-hops")

    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(worker_app.start_lifespan_context())
        await until(worker_runtime.ready.is_set, timeout=60)
        await stack.enter_async_context(gateway.router.lifespan_context(gateway))
        http = await stack.enter_async_context(
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=gateway),
                base_url="http://gw",
                headers={"Authorization": f"Bearer {admin_key}"},
                timeout=60,
            )
        )

        # the worker's heartbeats reach the gateway over the memory broker: it lists the model
        async def listed() -> bool:
            models = (await http.get("/v1/models")).json().get("data", [])
            return any(m["id"] == "m" for m in models)

        deadline = time.monotonic() + 60
        while not await listed():
            assert time.monotonic() < deadline, "the worker's model never listed"
            await asyncio.sleep(0.2)
        # the worker's request consumer has joined its group (it reads from "latest")
        requests = next(
            sub
            for sub in worker_runtime.bus.hot_broker.subscribers
            if Topic.INFERENCE_REQUESTED.value in getattr(sub, "topic_names_for_subscribe", ())
        )
        await until(
            lambda: requests.consumer is not None and bool(requests.consumer.assignment()),
            timeout=60,
        )
        # the request and its streamed chunks: on the memory broker
        async with http.stream(
            "POST",
            "/v1/completions",
            json={"model": "m", "prompt": "one two three", "max_tokens": 3, "stream": True},
        ) as response:
            assert response.status_code == 200
            lines = [line async for line in response.aiter_lines() if line.startswith("data:")]
        assert lines[-1] == "data: [DONE]"
        assert len(lines) >= 3  # chunks, then the end

        # the result's copy is on the durable log; a linger's copies share one partition
        # (six results keyed by their ids would have spread over up to six)
        more = [
            http.post("/v1/completions", json={"model": "m", "prompt": f"p{i}", "max_tokens": 2})
            for i in range(5)
        ]
        assert all(r.status_code == 200 for r in await asyncio.gather(*more))
        completed = await read_topic(durable, Topic.INFERENCE_COMPLETED.value, count=6)
        assert len(completed) == 6
        assert all(decode(r.value).model == "m" for r in completed)  # type: ignore[attr-defined]
        assert len({r.partition for r in completed}) <= 2  # at most a linger's boundary
        # every topic on its broker: the hops in memory, their DLQs and the rest on the log
        on_log, in_memory = await list_topics(durable), await list_topics(hops)
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
