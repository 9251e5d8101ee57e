"""Finding 6 of issue 13, one test per item: a malformed reply cannot stop the reply loop
(and /healthz goes red when that loop is gone), the token limit holds while streaming, and
request bodies are limited while they are read (chunked ones included); a caller that hangs
up on a non-streamed completion cancels its generation."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from aiokafka import TopicPartition
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from services.serving.gateway.adapters.replies import ReplyRouter
from services.serving.gateway.api_router import router
from services.serving.gateway.config import GatewaySettings
from services.serving.gateway.keys import KeyInfo, Role
from services.serving.gateway.protocol import APIError
from services.serving.gateway.responses import Shape, sse_stream
from services.serving.gateway.serving import Gateway
from services.serving.gateway.workers import WorkerDirectory
from shared.events.serving import (
    InferenceCompleted,
    ServedModel,
    WorkerHeartbeat,
)
from shared.wire import Chunk, encode_chunks
from tests.serving.test_gateway_logic import FakeBus, FakeReplies, _chat
from tests.support.stack import until

pytestmark = pytest.mark.unit

REPLIES = "llmops.inference.replies.gw"


class FakeConsumer:
    """Hands out the given batches (an exception in their place is raised), then nothing
    (or raises ``fail`` once they are out)."""

    def __init__(self, batches: list[Any], fail: Exception | None = None) -> None:
        self.batches = batches
        self.fail = fail

    async def getmany(self, timeout_ms: int) -> dict[TopicPartition, list[Any]]:
        if self.batches:
            values = self.batches.pop(0)
            if isinstance(values, Exception):
                raise values
            return {TopicPartition(REPLIES, 0): [SimpleNamespace(value=v) for v in values]}
        if self.fail is not None:
            raise self.fail
        await asyncio.sleep(0.01)
        return {}

    async def stop(self) -> None:
        return None


async def _router(consumer: FakeConsumer) -> ReplyRouter:
    replies = ReplyRouter("unused:9092", REPLIES, "heartbeats", WorkerDirectory())
    replies._consumer = consumer  # type: ignore[assignment]
    await replies.start_loop()
    return replies


async def test_malformed_replies_are_skipped_and_the_loop_goes_on() -> None:
    good = encode_chunks([Chunk(request_id="r1", seq=0, delta="hi", tokens=1)])
    done = InferenceCompleted(request_id="r1", model="m", model_version="1").to_bytes()
    broken = [
        b'{"kind":"llmops.inference.chunks"',  # cut off
        b'{"kind":"llmops.inference.chunks","chunks":[{"seq":0}]}',  # no request id
        b'{"kind":"llmops.inference.chunks","chunks":[7]}',
        b'{"kind":"llmops.inference.chunks","chunks":{"a":1}}',
        b"\xff\xfe not json at all",
        None,
    ]
    replies = await _router(FakeConsumer([broken, [good, done]]))  # type: ignore[list-item]
    queue = replies.open("r1")
    try:
        await until(lambda: queue.qsize() == 2)
        assert replies.alive()
        chunk, completed = queue.get_nowait(), queue.get_nowait()
        assert isinstance(chunk, Chunk)
        assert chunk.delta == "hi"
        assert isinstance(completed, InferenceCompleted)
    finally:
        await replies.stop()


async def test_healthz_goes_red_while_the_reply_loop_fails() -> None:
    replies = await _router(FakeConsumer([], fail=RuntimeError("consumer gone")))
    app = FastAPI()
    app.include_router(router)
    app.state.gateway = SimpleNamespace(directory=WorkerDirectory())
    app.state.ready = True
    app.state.reply_loop = replies.alive
    await until(lambda: not replies.alive())
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://gw"
    ) as http:
        health = await http.get("/healthz")
    assert health.status_code == 503
    assert health.json()["checks"]["reply_loop"] is False
    await replies.stop()  # stopping a failing loop is quiet (each failure was logged)


async def test_the_reply_loop_retries_a_failed_read_and_routes_again() -> None:
    """The shared background loop (shared/background.py) retries with backoff: a broker
    hiccup does not cut the gateway off its replies for good."""
    done = InferenceCompleted(request_id="r1", model="m", model_version="1").to_bytes()
    replies = await _router(FakeConsumer([RuntimeError("broker hiccup"), [done]]))
    queue = replies.open("r1")
    try:
        await until(lambda: queue.qsize() == 1)
        assert isinstance(queue.get_nowait(), InferenceCompleted)
        await until(replies.alive)
    finally:
        await replies.stop()


def _gateway(tpm: int) -> tuple[Gateway, FakeBus, KeyInfo]:
    bus = FakeBus()
    gateway = Gateway(
        GatewaySettings(),
        keys=None,  # type: ignore[arg-type]
        publisher=bus,
        replies=FakeReplies(),
        cancels=bus,
        directory=WorkerDirectory(),
        reply_topic=REPLIES,
    )
    return gateway, bus, KeyInfo(key_id="k1", name="k", role=Role.ENGINEER, rpm=100, tpm=tpm)


async def test_the_token_limit_stops_a_stream_that_passes_it() -> None:
    gateway, bus, key = _gateway(tpm=5)
    pending = await gateway.submit(key, _chat(stream=True), prompt="hi")
    for seq in range(4):  # 12 tokens on their way; the key may use 5 a minute
        pending.queue.put_nowait(
            Chunk(request_id=pending.request_id, seq=seq, delta="abc ", tokens=3)
        )
    events = gateway.events(pending)
    stream = sse_stream(
        await anext(events),
        events,
        request_id=pending.request_id,
        shape=Shape("m", chat=True),
        include_usage=False,
    )
    writes = [frame async for frame in stream]  # a write may hold several SSE events
    frames = [f + b"\n\n" for w in writes for f in w.split(b"\n\n") if f]
    errors = [json.loads(f[6:]) for f in frames if f.startswith(b'data: {"error"')]
    assert errors
    assert errors[0]["error"]["code"] == "rate_limit_tokens"
    assert sum(b'"content":"abc "' in f for f in frames) == 1  # the 2nd chunk never went out
    await until(lambda: bus.cancelled == [pending.request_id])  # its generation is stopped
    aborted = InferenceCompleted(
        request_id=pending.request_id,
        model="m",
        model_version="1",
        prompt_tokens=2,
        completion_tokens=9,
    )
    pending.queue.put_nowait(aborted)
    await until(lambda: pending.done)
    assert gateway.limiter.windows["k1"].token_sum == 11  # charged what was generated
    assert gateway.limiter.windows["k1"].streaming == 0
    assert gateway.limiter.check(key) == ("tokens", 60)  # and the next request waits


async def test_live_streams_of_one_key_count_against_each_other() -> None:
    gateway, _bus, key = _gateway(tpm=10)
    first = await gateway.submit(key, _chat(stream=True), prompt="hi")
    first.queue.put_nowait(Chunk(request_id=first.request_id, seq=0, delta="a", tokens=8))
    events = gateway.events(first)
    assert isinstance(await anext(events), Chunk)
    second = await gateway.submit(key, _chat(stream=True), prompt="hi")
    second.queue.put_nowait(Chunk(request_id=second.request_id, seq=0, delta="b", tokens=3))
    with pytest.raises(APIError) as refused:
        await anext(gateway.events(second))  # 8 + 3 live tokens: over 10
    assert refused.value.status == 429
    await events.aclose()


def _api(max_body_bytes: int) -> FastAPI:
    app = FastAPI()
    app.include_router(router)
    app.state.gateway = SimpleNamespace(settings=GatewaySettings(max_body_bytes=max_body_bytes))

    @app.exception_handler(APIError)
    async def api_error(_request: Request, exc: APIError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status)

    return app


async def test_a_chunked_body_is_cut_off_at_the_limit_not_read_whole() -> None:
    sent: list[int] = []

    async def body() -> AsyncIterator[bytes]:  # no Content-Length: chunked
        for _ in range(100):
            sent.append(1)
            yield b"x" * 1000

    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=_api(4000)), base_url="http://gw"
    ) as http:
        response = await http.post("/v1/chat/completions", content=body())
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "body_too_large"
    assert len(sent) <= 6  # read up to the limit, then refused (not 100 kB buffered first)


class OneKey:
    def __init__(self, key: KeyInfo) -> None:
        self.key = key

    def lookup(self, secret: str) -> KeyInfo | None:
        return self.key if secret == "sk-test" else None


def _served_api(gateway: Gateway) -> FastAPI:
    """The gateway's real routes over ``gateway`` (fakes for Kafka), one worker serving m."""
    beat = WorkerHeartbeat(worker_id="w1", models=[ServedModel(name="m", version="1")])
    gateway.directory.observe(beat, time.time())
    app = FastAPI()
    app.include_router(router)
    app.state.gateway = gateway

    @app.exception_handler(APIError)
    async def api_error(_request: Request, exc: APIError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    return app


class Caller:
    """A raw ASGI client of one non-streamed chat completion that can hang up mid-wait."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.gone = asyncio.Event()
        self.sent: list[dict[str, Any]] = []
        self.polls = 0  # receive() calls after the body: the gateway asking "still there?"
        self._body_sent = False

    async def receive(self) -> dict[str, Any]:
        if not self._body_sent:
            self._body_sent = True
            body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
            return {"type": "http.request", "body": json.dumps(body).encode(), "more_body": False}
        self.polls += 1
        await self.gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    def call(self) -> asyncio.Task[None]:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/v1/chat/completions",
            "raw_path": b"/v1/chat/completions",
            "query_string": b"",
            "root_path": "",
            "headers": [
                (b"authorization", b"Bearer sk-test"),
                (b"content-type", b"application/json"),
            ],
            "client": ("127.0.0.1", 5000),
            "server": ("gw", 80),
        }
        return asyncio.ensure_future(self.app(scope, self.receive, self.send))  # type: ignore[arg-type]

    def status(self) -> int | None:
        starts = [m["status"] for m in self.sent if m["type"] == "http.response.start"]
        return starts[0] if starts else None


def _request_id(bus: FakeBus) -> str:
    return str(bus.published[0].request_id)  # type: ignore[attr-defined]


async def test_a_non_streaming_caller_that_leaves_cancels_its_generation_and_is_charged() -> None:
    gateway, bus, key = _gateway(tpm=1000)
    gateway.keys = OneKey(key)
    gateway.settings = GatewaySettings(disconnect_poll_s=0.01)
    caller = Caller(_served_api(gateway))
    call = caller.call()
    await until(lambda: bus.published)  # the request is on its way to a worker
    request_id = _request_id(bus)
    await until(lambda: caller.polls >= 3)  # a few polls: still there, nothing cancelled
    assert bus.cancelled == []
    assert not call.done()
    caller.gone.set()  # the client hangs up while the worker generates
    await until(lambda: bus.cancelled == [request_id])  # llmops.inference.cancels
    await call
    assert caller.status() == 499
    aborted = InferenceCompleted(
        request_id=request_id, model="m", model_version="1", prompt_tokens=4, completion_tokens=6
    )
    gateway.replies.queues[request_id].put_nowait(aborted)  # type: ignore[attr-defined]
    await until(lambda: request_id not in gateway.replies.queues)  # type: ignore[attr-defined]
    assert gateway.limiter.windows["k1"].token_sum == 10  # charged what was generated


async def test_a_non_streaming_caller_that_stays_gets_its_result() -> None:
    gateway, bus, key = _gateway(tpm=1000)
    gateway.keys = OneKey(key)
    gateway.settings = GatewaySettings(disconnect_poll_s=0.01)
    caller = Caller(_served_api(gateway))
    call = caller.call()
    await until(lambda: bus.published)
    request_id = _request_id(bus)
    await until(lambda: caller.polls >= 3)
    done = InferenceCompleted(
        request_id=request_id, model="m", model_version="1", text="ok", prompt_tokens=2
    )
    gateway.replies.queues[request_id].put_nowait(done)  # type: ignore[attr-defined]
    await call
    assert caller.status() == 200
    assert bus.cancelled == []
    assert gateway.limiter.windows["k1"].token_sum == 2


@pytest.mark.parametrize("chat", [True, False])
def test_plain_text_chunks_render_as_the_full_path_does(chat: bool) -> None:
    from services.serving.gateway.responses import _Chunks

    fast, full = _Chunks("r1", Shape("m", chat=chat)), _Chunks("r1", Shape("m", chat=chat))
    full.base = fast.base  # same created second
    for text in ["", "héllo", 'quote " and \\ and \n', "\x00", "plain"]:
        assert fast.text(0, "v1", text) == full.make(0, "v1", text=text)
        frame = json.loads(fast.text(1, "v2", text).removeprefix(b"data: "))
        assert frame == json.loads(full.make(1, "v2", text=text).removeprefix(b"data: "))


async def test_chunks_already_waiting_join_one_write() -> None:
    gateway, _, key = _gateway(tpm=1000)
    pending = await gateway.submit(key, _chat(stream=True), prompt="hi")
    for seq in range(3):
        pending.queue.put_nowait(Chunk(request_id=pending.request_id, seq=seq, delta=f"w{seq}"))
    done = InferenceCompleted(
        request_id=pending.request_id, model="m", model_version="1", text="w0w1w2"
    )
    pending.queue.put_nowait(done)
    events = gateway.events(pending)
    stream = sse_stream(
        await anext(events),
        events,
        request_id=pending.request_id,
        shape=Shape("m", chat=False),
        include_usage=False,
        backlog=pending.queue.qsize,
    )
    writes = [w async for w in stream]
    assert len(writes) == 1  # everything was waiting: one write, not five
    texts = [
        json.loads(f[6:])["choices"][0]["text"]
        for f in writes[0].split(b"\n\n")
        if f.startswith(b"data: {")
    ]
    assert texts == ["w0", "w1", "w2"]
    assert writes[0].endswith(b"data: [DONE]\n\n")
