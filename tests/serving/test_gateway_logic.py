"""The gateway's use cases and OpenAI shapes with small fakes: what is refused with a 400,
how tool calls and logprobs are shaped, and a caller that leaves mid-stream."""

from __future__ import annotations

import asyncio
import json

import pytest

from services.serving.gateway.config import GatewaySettings
from services.serving.gateway.keys import KeyInfo, Role
from services.serving.gateway.ports import Reply
from services.serving.gateway.protocol import APIError, ChatCompletionRequest, CompletionRequest
from services.serving.gateway.responses import Shape, completion_body, sse_stream
from services.serving.gateway.serving import Gateway
from services.serving.gateway.workers import WorkerDirectory
from shared.events import Event
from shared.events.serving import GeneratedChoice, InferenceCompleted
from shared.wire import Chunk
from tests.support.stack import until

pytestmark = pytest.mark.unit

KEY = KeyInfo(key_id="k1", name="k", role=Role.ENGINEER, rpm=100, tpm=1000)
TOOL = {
    "type": "function",
    "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}},
}


def _chat(**fields: object) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate(
        {"model": "m", "messages": [{"role": "user", "content": "hi"}], **fields}
    )


def test_unknown_and_unhonourable_parameters_are_named() -> None:
    assert _chat(guided_json={}, store=True).unsupported() == ["guided_json", "store"]
    completion = CompletionRequest.model_validate(
        {"model": "m", "prompt": "x", "echo": True, "best_of": 3, "suffix": "!"}
    )
    assert completion.unsupported() == ["echo", "best_of", "suffix"]
    with pytest.raises(APIError) as auto:
        _chat(tools=[TOOL]).structured()  # "auto" is the default with tools
    assert auto.value.param == "tool_choice"
    with pytest.raises(APIError) as both:
        _chat(
            tools=[TOOL], tool_choice="required", response_format={"type": "json_object"}
        ).structured()
    assert both.value.param == "response_format"


def test_response_format_and_tools_become_engine_constraints() -> None:
    assert _chat().structured() is None
    assert _chat(response_format={"type": "json_object"}).structured() == {"json_object": True}
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    fmt = {"type": "json_schema", "json_schema": {"name": "s", "schema": schema}}
    assert _chat(response_format=fmt).structured() == {"json": schema}
    forced = _chat(tools=[TOOL], tool_choice="required").structured()
    assert forced is not None
    assert forced["json"]["properties"]["name"] == {"type": "string", "enum": ["lookup"]}
    assert _chat(tools=[TOOL], tool_choice="none").structured() is None
    sampling = _chat(logprobs=True, top_logprobs=2, top_k=4).sampling(16)
    assert (sampling["logprobs"], sampling["top_k"], sampling["max_tokens"]) == (2, 4, 16)


def _completed(text: str, logprobs: list[dict[str, object]] | None = None) -> InferenceCompleted:
    choice = GeneratedChoice(index=0, text=text, finish_reason="stop", logprobs=logprobs)
    return InferenceCompleted(
        request_id="r", model="m", model_version="1", text=text, choices=[choice]
    )


def test_tool_call_and_logprob_shapes() -> None:
    call = json.dumps({"name": "lookup", "arguments": {"q": 1}})
    body = completion_body(_completed(call), Shape("m", chat=True, tool_call=True))
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    function = choice["message"]["tool_calls"][0]["function"]
    assert (function["name"], json.loads(function["arguments"])) == ("lookup", {"q": 1})

    entries = [{"token": "ab", "logprob": -0.1, "top": [["ab", -0.1], ["c", -2.0]]}]
    chat = completion_body(_completed("ab", entries), Shape("m", chat=True, logprobs=True))
    token = chat["choices"][0]["logprobs"]["content"][0]
    assert token["bytes"] == [97, 98]
    assert [t["token"] for t in token["top_logprobs"]] == ["ab", "c"]
    text = completion_body(_completed("ab", entries), Shape("m", chat=False, logprobs=True))
    assert text["choices"][0]["logprobs"]["top_logprobs"] == [{"ab": -0.1, "c": -2.0}]


class FakeReplies:
    def __init__(self) -> None:
        self.queues: dict[str, asyncio.Queue[Reply]] = {}

    def open(self, request_id: str) -> asyncio.Queue[Reply]:
        self.queues[request_id] = asyncio.Queue()
        return self.queues[request_id]

    def close(self, request_id: str) -> None:
        self.queues.pop(request_id, None)


class FakeBus:
    def __init__(self) -> None:
        self.published: list[Event] = []
        self.cancelled: list[str] = []

    async def publish(self, event: Event) -> Event:
        self.published.append(event)
        return event

    async def cancel(self, request_id: str) -> None:
        self.cancelled.append(request_id)


async def test_a_caller_leaving_mid_stream_cancels_and_is_charged() -> None:
    replies, bus = FakeReplies(), FakeBus()
    gateway = Gateway(
        GatewaySettings(),
        keys=None,  # type: ignore[arg-type]
        publisher=bus,
        replies=replies,
        cancels=bus,
        directory=WorkerDirectory(),
        reply_topic="replies",
    )
    pending = await gateway.submit(KEY, _chat(stream=True), prompt="hi")
    pending.queue.put_nowait(Chunk(request_id=pending.request_id, seq=0, delta="a", tokens=3))
    events = gateway.events(pending)
    stream = sse_stream(
        await anext(events),
        events,
        request_id=pending.request_id,
        shape=Shape("m", chat=True),
        include_usage=False,
    )
    assert b'"content":"a"' in await anext(stream)
    await stream.aclose()  # the client is gone
    await until(lambda: bus.cancelled == [pending.request_id])
    aborted = _completed("a b")
    aborted = aborted.model_copy(
        update={"request_id": pending.request_id, "prompt_tokens": 4, "completion_tokens": 7}
    )
    pending.queue.put_nowait(aborted)
    await until(lambda: pending.done)
    assert gateway.limiter.windows["k1"].token_sum == 11  # prompt + generated until the abort


def test_clients_find_the_gateway_through_its_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The demo reads the gateway's URL from settings, never from os.environ directly."""
    for name in ("LLMOPS_GATEWAY_URL", "LLMOPS_GATEWAY_PORT", "LLMOPS_ADMIN_PORT"):
        monkeypatch.delenv(name, raising=False)
    assert GatewaySettings().base_url == "http://127.0.0.1:8000"
    monkeypatch.setenv("LLMOPS_GATEWAY_PORT", "18123")
    assert GatewaySettings().base_url == "http://127.0.0.1:18123"
    monkeypatch.setenv("LLMOPS_GATEWAY_URL", "http://gw.internal:9000/")
    assert GatewaySettings().base_url == "http://gw.internal:9000"
