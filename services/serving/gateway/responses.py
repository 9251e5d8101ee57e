"""OpenAI response bodies and SSE chunks built from our events."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

from services.serving.gateway.protocol import APIError
from services.serving.gateway.serving import usage
from shared.events import Event
from shared.events.serving import InferenceChunk, InferenceCompleted


def completion_body(event: InferenceCompleted, model: str, chat: bool) -> dict[str, Any]:
    choices = event.choices or []
    if chat:
        out = [
            {
                "index": c.index,
                "message": {"role": "assistant", "content": c.text},
                "finish_reason": c.finish_reason,
                "logprobs": None,
            }
            for c in choices
        ]
    else:
        out = [
            {"index": c.index, "text": c.text, "finish_reason": c.finish_reason, "logprobs": None}
            for c in choices
        ]
    return {
        "id": response_id(event.request_id, chat),
        "object": "chat.completion" if chat else "text_completion",
        "created": int(event.occurred_at.timestamp()),
        "model": model,
        "system_fingerprint": event.model_version,
        "choices": out,
        "usage": usage(event),
    }


def response_id(request_id: str, chat: bool) -> str:
    return f"{'chatcmpl' if chat else 'cmpl'}-{request_id}"


DONE = b"data: [DONE]\n\n"


def _sse(data: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


async def sse_stream(
    first: Event | InferenceChunk,
    rest: AsyncIterator[Event | InferenceChunk],
    *,
    request_id: str,
    model: str,
    chat: bool,
    n: int,
    include_usage: bool,
) -> AsyncIterator[bytes]:
    """OpenAI's stream: one chunk per token batch, a finish chunk per choice, usage, [DONE]."""
    base = {
        "id": response_id(request_id, chat),
        "object": "chat.completion.chunk" if chat else "text_completion",
        "created": int(time.time()),
        "model": model,
    }
    started = set()

    def chunk(index: int, text: str | None, finish: str | None, version: str) -> dict[str, Any]:
        if chat:
            delta: dict[str, Any] = {}
            if index not in started:
                delta["role"] = "assistant"
                started.add(index)
            if text is not None:
                delta["content"] = text
            choice: dict[str, Any] = {"index": index, "delta": delta}
        else:
            choice = {"index": index, "text": text or ""}
        choice.update(finish_reason=finish, logprobs=None)
        return {**base, "system_fingerprint": version, "choices": [choice]}

    async def events() -> AsyncIterator[Event | InferenceChunk]:
        yield first
        async for event in rest:
            yield event

    try:
        async for event in events():
            if isinstance(event, InferenceChunk):
                yield _sse(chunk(event.index, event.delta, None, event.model_version))
            elif isinstance(event, InferenceCompleted):  # the tail goes out in one write
                tail = [
                    _sse(chunk(c.index, None if chat else "", c.finish_reason, event.model_version))
                    for c in event.choices or []
                ]
                if include_usage:
                    tail.append(_sse({**base, "choices": [], "usage": usage(event)}))
                yield b"".join([*tail, DONE])
                return
    except APIError as exc:
        yield _sse(exc.body())
    yield DONE
