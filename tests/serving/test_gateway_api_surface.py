"""The OpenAI surface beyond plain text, with the official `openai` client against real
gateways and real vLLM workers: structured outputs, tool calls, logprobs, vLLM's extras,
embeddings, refusals of what the platform cannot honour, and a client leaving mid-stream.

One worker and one gateway (the cancel must reach whichever worker generates; two workers are
covered by test_gateway_openai.py).
"""

from __future__ import annotations

import asyncio
import functools
import json
import math
from collections.abc import Iterator
from pathlib import Path

import httpx
import jsonschema
import openai
import pytest

from shared.events import decode
from shared.events.serving import InferenceCompleted
from shared.topics import Topic
from tests.serving.conftest import ADMIN_KEY
from tests.serving.stack import ServingStack
from tests.support.stack import read_topic, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def stack(
    kafka: str, tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServingStack]:
    root = tmp_path_factory.mktemp("serving-surface")
    with ServingStack(kafka, root, tiny_models["v1"], ADMIN_KEY).start(workers=1, gateways=1) as s:
        yield s


MODEL = "llmops-tiny"
HELLO = [{"role": "user", "content": "Hello"}]
TICKET_SCHEMA = {
    "type": "object",
    "properties": {
        "priority": {"type": "string", "enum": ["low", "high"]},
        "team": {"type": "string", "enum": ["billing", "support", "sales"]},
        "urgent": {"type": "boolean"},
    },
    "required": ["priority", "team", "urgent"],
    "additionalProperties": False,
}
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "enum": ["Paris", "Oslo"]}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}


def test_json_schema_output_validates_against_its_schema(stack: ServingStack) -> None:
    chat = stack.client().chat.completions.create(
        model=MODEL,
        messages=HELLO,
        temperature=0.0,
        max_tokens=200,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "ticket", "schema": TICKET_SCHEMA, "strict": True},
        },
    )
    assert chat.choices[0].finish_reason == "stop", chat.choices[0].message.content
    jsonschema.validate(json.loads(chat.choices[0].message.content or ""), TICKET_SCHEMA)
    loose = stack.client().chat.completions.create(
        model=MODEL, messages=HELLO, max_tokens=8, response_format={"type": "json_object"}
    )
    assert (loose.choices[0].message.content or "").startswith("{")  # constrained, not free


def test_a_forced_tool_call_comes_back_as_a_tool_call(stack: ServingStack) -> None:
    client = stack.client()
    chat = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Weather in Oslo?"}],
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
        tool_choice="required",
        max_tokens=150,
        temperature=0.0,
    )
    choice = chat.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    call = choice.message.tool_calls[0]  # type: ignore[index]
    assert call.function.name == "get_weather"  # type: ignore[union-attr]
    arguments = json.loads(call.function.arguments)  # type: ignore[union-attr]
    jsonschema.validate(arguments, WEATHER_TOOL["function"]["parameters"])  # type: ignore[index]

    stream = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Weather?"}],
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        max_tokens=150,
        stream=True,
    )
    chunks = list(stream)
    calls = [c for ch in chunks for c in (ch.choices[0].delta.tool_calls or []) if ch.choices]
    assert calls[0].function.name == "get_weather"  # type: ignore[union-attr]
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_logprobs_are_present(stack: ServingStack) -> None:
    client = stack.client()
    chat = client.chat.completions.create(
        model=MODEL, messages=HELLO, max_tokens=6, logprobs=True, top_logprobs=3
    )
    content = chat.choices[0].logprobs.content  # type: ignore[union-attr]
    assert len(content) == chat.usage.completion_tokens == 6  # type: ignore[arg-type,union-attr]
    assert all(t.logprob <= 0 and len(t.top_logprobs) == 3 for t in content)
    assert "".join(t.token for t in content) == chat.choices[0].message.content
    completion = client.completions.create(model=MODEL, prompt="The", max_tokens=5, logprobs=2)
    logprobs = completion.choices[0].logprobs
    assert logprobs is not None
    assert len(logprobs.tokens or []) == 5
    assert all(len(top) == 2 for top in logprobs.top_logprobs or [])
    streamed = client.chat.completions.create(
        model=MODEL, messages=HELLO, max_tokens=4, logprobs=True, stream=True
    )
    tokens = [
        token
        for chunk in streamed
        if chunk.choices and chunk.choices[0].logprobs
        for token in chunk.choices[0].logprobs.content or []
    ]
    assert len(tokens) == 4


def test_vllm_extras_and_n_are_honoured(stack: ServingStack) -> None:
    completion = stack.client().completions.create(
        model=MODEL,
        prompt="The",
        max_tokens=20,
        n=2,
        extra_body={"ignore_eos": True, "min_tokens": 20, "top_k": 5, "repetition_penalty": 1.2},
    )
    assert len(completion.choices) == 2
    assert completion.usage.completion_tokens == 40  # type: ignore[union-attr]
    assert {c.finish_reason for c in completion.choices} == {"length"}


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"extra_body": {"guided_regex": "a+"}}, "guided_regex"),
        ({"extra_body": {"suffix": "!"}}, "suffix"),
        ({"tools": [WEATHER_TOOL], "tool_choice": "auto"}, "tool_choice"),
        ({"top_logprobs": 2}, "top_logprobs"),
        ({"extra_body": {"echo": True}}, "echo"),
    ],
)
def test_a_parameter_the_platform_cannot_honour_is_a_400_naming_it(
    stack: ServingStack, params: dict[str, object], named: str
) -> None:
    client = stack.client()
    if named in ("suffix", "echo"):
        call = functools.partial(client.completions.create, prompt="x")
    else:
        call = functools.partial(client.chat.completions.create, messages=HELLO)  # type: ignore[arg-type]
    with pytest.raises(openai.BadRequestError) as refused:
        call(model=MODEL, max_tokens=2, **params)
    assert refused.value.param == named
    assert named in refused.value.message


def test_embeddings_from_the_packaged_minilm(stack: ServingStack) -> None:
    client = stack.client()
    texts = ["I cannot log in to my account", "Login fails for my account", "Bananas are yellow"]
    result = client.embeddings.create(model="all-MiniLM-L6-v2", input=texts)
    vectors = [d.embedding for d in result.data]
    assert [len(v) for v in vectors] == [384, 384, 384]

    def cosine(a: list[float], b: list[float]) -> float:
        return sum(x * y for x, y in zip(a, b, strict=True)) / math.prod(
            math.sqrt(sum(x * x for x in v)) for v in (a, b)
        )

    assert cosine(vectors[0], vectors[1]) > cosine(vectors[0], vectors[2]) + 0.2
    assert result.usage.prompt_tokens > 0
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model=MODEL, input="x")


def test_a_client_leaving_mid_stream_frees_the_engine_slot_and_is_charged(
    stack: ServingStack, kafka: str
) -> None:
    key = stack.create_key("engineer", tpm=5)
    body = {
        "model": MODEL,
        "messages": HELLO,
        "max_tokens": 230,
        "ignore_eos": True,
        "stream": True,
    }
    headers = {"Authorization": f"Bearer {key}"}
    with (
        httpx.Client(base_url=stack.url(), timeout=60) as http,
        http.stream("POST", "/v1/chat/completions", json=body, headers=headers) as response,
    ):
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("data: {"):
                request_id = json.loads(line[6:])["id"].removeprefix("chatcmpl-")
                break  # leave after the first chunk: the connection closes here

    def aborted() -> InferenceCompleted | None:
        records = asyncio.run(
            read_topic(kafka, Topic.INFERENCE_COMPLETED.value, count=10_000, timeout=2)
        )
        for record in records:
            event = decode(record.value)
            if isinstance(event, InferenceCompleted) and event.request_id == request_id:
                return event
        return None

    done = wait_until(aborted, timeout=60)
    assert done.finish_reason == "abort"
    assert done.completion_tokens < 230
    with stack.http() as http:
        wait_until(lambda: http.get("/healthz").json()["in_flight"] == 0, timeout=30)
    limited = stack.client(key=key)  # charged for what it got: over its 5 tokens a minute
    with pytest.raises(openai.RateLimitError):
        limited.completions.create(model=MODEL, prompt="x", max_tokens=1)
