"""The official `openai` client against real gateways and real vLLM workers over Kafka.

Module-scoped stack: two workers (tiny model, vLLM on the CPU) and two gateways. The tests
run in file order; the last one stops the workers.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from pathlib import Path

import httpx
import openai
import pytest

from shared.client import PlatformClient
from shared.events import ClaimCheck, ModelPromoted, ModelRolledBack, decode
from shared.events.serving import FeedbackReceived, InferenceCompleted
from shared.modelkit import MODEL_DIR_MEDIA_TYPE, dir_digest
from shared.settings import ServiceSettings
from shared.topics import Topic
from tests.serving.stack import ServingStack
from tests.support.stack import produce, read_topic, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MODEL = "llmops-tiny"
GREEDY = {"temperature": 0.0, "max_tokens": 12}


def test_lists_the_served_model(stack: ServingStack) -> None:
    models = stack.client().models.list().data
    assert [m.id for m in models] == [MODEL]
    assert models[0].model_extra["versions"] == ["bootstrap"]


def test_completion_and_chat_completion(stack: ServingStack, kafka: str) -> None:
    client = stack.client()
    completion = client.completions.create(model=MODEL, prompt="The platform", **GREEDY)
    assert completion.object == "text_completion"
    assert completion.choices[0].text
    assert completion.usage.completion_tokens == 12
    assert completion.usage.prompt_tokens > 0
    assert completion.system_fingerprint == "bootstrap"
    chat = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Hello"}], n=2, max_tokens=12
    )
    assert len(chat.choices) == 2
    assert chat.choices[0].message.role == "assistant"
    assert chat.choices[0].finish_reason == "length"
    with pytest.raises(openai.BadRequestError):  # vLLM: n > 1 needs sampling, not greedy
        client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "Hello"}], n=2, **GREEDY
        )
    request_id = chat.id.removeprefix("chatcmpl-")
    records = asyncio.run(
        read_topic(kafka, Topic.INFERENCE_COMPLETED.value, count=10_000, timeout=3)
    )
    events = [decode(r.value, expected=InferenceCompleted) for r in records]
    assert any(e.request_id == request_id and e.prompt == "user: Hello" for e in events)


def test_streaming_arrives_in_order_and_ends(stack: ServingStack) -> None:
    client = stack.client(gateway=1)
    whole = client.completions.create(model=MODEL, prompt="Every service", **GREEDY)
    stream = client.completions.create(
        model=MODEL,
        prompt="Every service",
        stream=True,
        stream_options={"include_usage": True},
        **GREEDY,
    )
    chunks = list(stream)
    texts = [c.choices[0].text for c in chunks if c.choices]
    assert len(texts) > 2
    assert "".join(texts) == whole.choices[0].text
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 12
    chat = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}], stream=True, **GREEDY
    )
    deltas = list(chat)
    assert deltas[0].choices[0].delta.role == "assistant"
    assert deltas[-1].choices[0].finish_reason == "length"


def test_feedback_is_published(stack: ServingStack, kafka: str) -> None:
    with stack.http() as http:
        response = http.post(
            "/v1/feedback",
            json={"response_id": "chatcmpl-abc", "rating": 1, "correction": "better"},
        )
        assert response.status_code == 200, response.text
        assert http.post("/v1/feedback", json={"response_id": "x"}).status_code == 400
    records = asyncio.run(read_topic(kafka, Topic.FEEDBACK_RECEIVED.value, count=10_000, timeout=3))
    feedback = [decode(r.value, expected=FeedbackReceived) for r in records]
    assert any(f.response_id == "chatcmpl-abc" and f.rating == 1 for f in feedback)


def test_keys_and_roles(stack: ServingStack) -> None:
    with pytest.raises(openai.AuthenticationError) as bad:
        stack.client(key="sk-wrong").models.list()
    assert bad.value.status_code == 401
    assert bad.value.code == "invalid_api_key"
    viewer = stack.client(key=stack.create_key("viewer"))
    assert viewer.models.list().data
    with pytest.raises(openai.PermissionDeniedError):
        viewer.completions.create(model=MODEL, prompt="x")
    engineer = stack.client(key=stack.create_key("engineer"))
    assert engineer.completions.create(model=MODEL, prompt="x", max_tokens=2).choices


def test_validation_errors_have_openai_shape(stack: ServingStack) -> None:
    client = stack.client()
    with pytest.raises(openai.BadRequestError) as over:
        client.completions.create(model=MODEL, prompt="x", max_tokens=100_000)
    assert over.value.code == "max_tokens_too_large"
    assert over.value.param == "max_tokens"
    with pytest.raises(openai.BadRequestError):
        client.completions.create(model=MODEL, prompt="x", n=50)
    with pytest.raises(openai.BadRequestError) as long_prompt:
        client.completions.create(model=MODEL, prompt="word " * 5000)
    assert long_prompt.value.code == "context_length_exceeded"
    with pytest.raises(openai.BadRequestError):  # fits the gateway's cap, not the context
        client.completions.create(model=MODEL, prompt="token " * 1000)
    with pytest.raises(openai.NotFoundError) as unknown:
        client.completions.create(model="no-such-model", prompt="x")
    assert unknown.value.code == "model_not_found"
    with stack.http() as http:
        big = http.post(
            "/v1/completions",
            content=b"x" * 2_000_000,
            headers={"content-type": "application/json"},
        )
        assert big.status_code == 413
        assert big.json()["error"]["code"] == "body_too_large"
        broken = http.post(
            "/v1/completions", content=b"{not json", headers={"content-type": "application/json"}
        )
        assert broken.status_code == 400
        assert "error" in broken.json()


def test_rate_limit_gives_429_with_retry_after(stack: ServingStack) -> None:
    key = stack.create_key("engineer", rpm=2)
    client = stack.client(key=key)
    for _ in range(2):
        client.completions.create(model=MODEL, prompt="x", max_tokens=2)
    with pytest.raises(openai.RateLimitError) as limited:
        client.completions.create(model=MODEL, prompt="x", max_tokens=2)
    assert int(limited.value.response.headers["retry-after"]) >= 1


def test_deadline_gives_504(stack: ServingStack) -> None:
    client = stack.client(default_headers={"x-llmops-timeout-ms": "1"})
    with pytest.raises(openai.APIStatusError) as late:
        client.completions.create(model=MODEL, prompt="x", max_tokens=64)
    assert late.value.status_code == 504


def test_two_workers_and_two_gateways_share_requests(stack: ServingStack) -> None:
    def ask(i: int) -> tuple[str, str]:
        with httpx.Client(base_url=stack.url(i % 2), timeout=60) as http:
            response = http.post(
                "/v1/completions",
                headers={"Authorization": f"Bearer {stack.admin_key}"},
                json={"model": MODEL, "prompt": f"request {i}", "max_tokens": 8},
            )
            response.raise_for_status()
            return response.headers["x-llmops-worker"], response.json()["id"]

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(ask, range(48)))
    assert len({rid for _, rid in answers}) == 48
    assert len({worker for worker, _ in answers}) == 2


def test_undecodable_requests_go_to_the_dlq(stack: ServingStack, kafka: str) -> None:
    asyncio.run(
        produce(kafka, Topic.INFERENCE_REQUESTED.value, [b"\xffnot an event"], key=b"poison")
    )

    def dead_lettered() -> bool:
        records = asyncio.run(
            read_topic(kafka, Topic.INFERENCE_REQUESTED.dlq, count=10_000, timeout=1)
        )
        return any(
            r.key == b"poison"
            and (b"x-llmops-dlq-reason", b"undecodable") in [(k.encode(), v) for k, v in r.headers]
            for r in records
        )

    wait_until(dead_lettered, timeout=20, interval=0.5)
    assert stack.client().completions.create(model=MODEL, prompt="x", max_tokens=2).choices


def _serving_version(stack: ServingStack) -> set[str]:
    client = stack.client()
    return {
        client.completions.create(model=MODEL, prompt="x", max_tokens=1).system_fingerprint
        for _ in range(8)
    }


def test_promotion_then_rollback_change_the_version_live(
    stack: ServingStack, tiny_models: dict[str, Path]
) -> None:
    digest, size = dir_digest(tiny_models["v2"])
    artifact = ClaimCheck(
        uri=str(tiny_models["v2"]), sha256=digest, size=size, media_type=MODEL_DIR_MEDIA_TYPE
    )
    settings = ServiceSettings(kafka_bootstrap=stack.env["LLMOPS_KAFKA_BOOTSTRAP"])

    async def publish(event: ModelPromoted | ModelRolledBack) -> None:
        async with PlatformClient(settings, producer_name="test") as client:
            await client.publish(event)

    asyncio.run(
        publish(
            ModelPromoted(
                model_name=MODEL,
                model_version="v2",
                artifact=artifact,
                previous_version="bootstrap",
                actor="test",
            )
        )
    )
    # both workers load v2 (vLLM start on shared CPUs), then every answer comes from v2
    wait_until(lambda: _serving_version(stack) == {"v2"}, timeout=240, interval=1)
    # /v1/models reads the workers' heartbeats: they catch up within a heartbeat or two
    wait_until(
        lambda: stack.client().models.list().data[0].model_extra["versions"] == ["v2"],
        timeout=10,
        interval=0.5,
    )
    started = time.monotonic()
    asyncio.run(
        publish(
            ModelRolledBack(
                model_name=MODEL, from_version="v2", to_version="bootstrap", actor="test"
            )
        )
    )
    wait_until(lambda: _serving_version(stack) == {"bootstrap"}, timeout=60, interval=0.5)
    assert time.monotonic() - started < 30  # the previous version stayed loaded


def test_no_worker_gives_503_quickly(stack: ServingStack) -> None:
    for worker in stack.workers:
        worker.stop()
    client = stack.client(timeout=10)
    started = time.monotonic()
    with pytest.raises(openai.InternalServerError) as unavailable:
        client.completions.create(model=MODEL, prompt="x")
    assert unavailable.value.status_code == 503
    assert time.monotonic() - started < 2
