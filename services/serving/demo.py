"""Demo stage: the OpenAI client against the gateway (answered by vLLM workers over Kafka)."""

from __future__ import annotations

import time
from typing import Any

import httpx
from openai import OpenAI

from services.serving.gateway.config import GatewaySettings


def _wait_for_models(client: OpenAI, timeout_s: float = 180.0) -> list[Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            models = client.models.list().data
            if models:
                return models
        except Exception:  # the gateway or the workers are still starting
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            raise TimeoutError("no serving worker reported in time")
        time.sleep(1)


def _versions(model: Any) -> list[str]:
    return list((model.model_extra or {}).get("versions", []))


def _wait_for_version(client: OpenAI, name: str, version: str, timeout_s: float) -> list[Any]:
    """The workers hot-swap to a promoted version on ModelPromoted: loading it into a new
    vLLM engine takes a while, during which the previous version keeps answering."""
    deadline = time.monotonic() + timeout_s
    while True:
        models = _wait_for_models(client)
        if any(m.id == name and version in _versions(m) for m in models):
            return models
        if time.monotonic() > deadline:
            raise TimeoutError(f"the workers did not load the promoted {name} {version} in time")
        time.sleep(1)


def run(ctx: Any) -> None:
    base = GatewaySettings(service_name="demo").base_url
    client = OpenAI(base_url=f"{base}/v1", api_key=ctx.admin_key, max_retries=2)
    models = _wait_for_models(client)
    model = models[0].id
    promoted = ctx.results.get("evaluation") or {}
    if promoted.get("outcome") == "promoted":
        model, version = promoted["model_name"], promoted["model_version"]
        if not any(m.id == model and version in _versions(m) for m in models):
            ctx.say(f"waiting for the workers to hot-swap to the promoted {model} {version}...")
            models = _wait_for_version(client, model, version, timeout_s=600)
    listed = ", ".join(f"{m.id} ({','.join(_versions(m))})" for m in models)
    ctx.say(f"models: {listed}")

    started = time.perf_counter()
    completion = client.completions.create(model=model, prompt="The platform", max_tokens=16)
    ctx.say(
        f"completion: {completion.usage.completion_tokens} tokens in "  # type: ignore[union-attr]
        f"{(time.perf_counter() - started) * 1000:.0f} ms from version "
        f"{completion.system_fingerprint}"
    )

    started = time.perf_counter()
    first: float | None = None
    tokens = 0
    response_id = ""
    stream = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "How do I reset my password?"}],
        max_tokens=64,
        stream=True,
        stream_options={"include_usage": True},
    )
    for chunk in stream:
        response_id = chunk.id
        if chunk.choices and chunk.choices[0].delta.content and first is None:
            first = time.perf_counter() - started
        if chunk.usage is not None:
            tokens = chunk.usage.completion_tokens
    elapsed = time.perf_counter() - started
    ctx.say(
        f"streamed chat: {tokens} tokens, first after {(first or 0) * 1000:.0f} ms, "
        f"{tokens / elapsed:.0f} tokens/s"
    )

    feedback = httpx.post(
        f"{base}/v1/feedback",
        timeout=10,
        headers={"Authorization": f"Bearer {ctx.admin_key}"},
        json={"response_id": response_id, "rating": 1, "comment": "demo"},
    )
    feedback.raise_for_status()
    ctx.say(f"feedback for {response_id}: {feedback.json()['status']}")
    ctx.results["serving"] = {
        "model": model,
        "response_id": response_id,
        "tokens": tokens,
        "gateway_url": base,
    }
