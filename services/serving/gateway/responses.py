"""OpenAI response bodies and SSE chunks built from our events."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from services.serving.gateway.protocol import APIError
from services.serving.gateway.serving import usage
from shared.events import Event
from shared.events.serving import GeneratedChoice, InferenceCompleted
from shared.wire import Chunk


@dataclass(frozen=True)
class Shape:
    """How to shape one request's answer: chat or completion, tool calls, logprobs."""

    model: str
    chat: bool
    tool_call: bool = False  # the text is a forced {"name", "arguments"} tool call
    logprobs: bool = False


def _bytes(token: str) -> list[int]:
    return list(token.encode())


def chat_logprobs(entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "content": [
            {
                "token": e["token"],
                "logprob": e["logprob"],
                "bytes": _bytes(e["token"]),
                "top_logprobs": [
                    {"token": t, "logprob": lp, "bytes": _bytes(t)} for t, lp in e["top"]
                ],
            }
            for e in entries
        ]
    }


def text_logprobs(entries: list[dict[str, Any]], offset: int = 0) -> dict[str, Any]:
    offsets, at = [], offset
    for e in entries:
        offsets.append(at)
        at += len(e["token"])
    return {
        "tokens": [e["token"] for e in entries],
        "token_logprobs": [e["logprob"] for e in entries],
        "top_logprobs": [dict(e["top"]) for e in entries],
        "text_offset": offsets,
    }


def tool_calls(text: str) -> list[dict[str, Any]] | None:
    """The OpenAI tool calls in a forced tool-call text; None if it is not one (cut short)."""
    try:
        call = json.loads(text)
    except ValueError:
        return None
    if not isinstance(call, dict) or "name" not in call or "arguments" not in call:
        return None
    return [
        {
            "id": f"call_{uuid.uuid4().hex[:24]}",
            "type": "function",
            "function": {"name": call["name"], "arguments": json.dumps(call["arguments"])},
        }
    ]


def _choice(c: GeneratedChoice, shape: Shape) -> dict[str, Any]:
    logprobs = None
    if shape.logprobs:
        entries = c.logprobs or []
        logprobs = chat_logprobs(entries) if shape.chat else text_logprobs(entries)
    if not shape.chat:
        return {
            "index": c.index,
            "text": c.text,
            "finish_reason": c.finish_reason,
            "logprobs": logprobs,
        }
    message: dict[str, Any] = {"role": "assistant", "content": c.text}
    finish = c.finish_reason
    calls = tool_calls(c.text) if shape.tool_call else None
    if calls:
        message, finish = {"role": "assistant", "content": None, "tool_calls": calls}, "tool_calls"
    return {"index": c.index, "message": message, "finish_reason": finish, "logprobs": logprobs}


def completion_body(event: InferenceCompleted, shape: Shape) -> dict[str, Any]:
    return {
        "id": response_id(event.request_id, shape.chat),
        "object": "chat.completion" if shape.chat else "text_completion",
        "created": int(event.occurred_at.timestamp()),
        "model": shape.model,
        "system_fingerprint": event.model_version,
        "choices": [_choice(c, shape) for c in event.choices or []],
        "usage": usage(event),
    }


def response_id(request_id: str, chat: bool) -> str:
    return f"{'chatcmpl' if chat else 'cmpl'}-{request_id}"


DONE = b"data: [DONE]\n\n"
_json = msgspec.json.Encoder().encode


def _sse(data: dict[str, Any]) -> bytes:
    return b"data: " + _json(data) + b"\n\n"


class _Chunks:
    """OpenAI stream chunks of one request: role first, running text offsets for logprobs."""

    def __init__(self, request_id: str, shape: Shape) -> None:
        self.shape = shape
        self.base = {
            "id": response_id(request_id, shape.chat),
            "object": "chat.completion.chunk" if shape.chat else "text_completion",
            "created": int(time.time()),
            "model": shape.model,
        }
        self.started: set[int] = set()
        self.offsets: dict[int, int] = {}
        self._frames: dict[tuple[int, str], tuple[bytes, bytes]] = {}

    def text(self, index: int, version: str, text: str) -> bytes:
        """A plain text chunk (no logprobs, role already sent): the same bytes as ``make``,
        from a prefix and suffix rendered once per choice, only the text encoded per token."""
        frame = self._frames.get((index, version))
        if frame is None:
            if self.shape.logprobs or (self.shape.chat and index not in self.started):
                return self.make(index, version, text=text)
            mark = "\x00"
            whole = self.make(index, version, text=mark)
            head, tail = whole.rsplit(_json(mark), 1)
            frame = self._frames[(index, version)] = (head, tail)
            return head + _json(text) + tail
        return frame[0] + _json(text) + frame[1]

    def make(
        self,
        index: int,
        version: str,
        *,
        text: str | None = None,
        finish: str | None = None,
        logprobs: list[dict[str, Any]] | None = None,
        calls: list[dict[str, Any]] | None = None,
    ) -> bytes:
        lp: dict[str, Any] | None = None
        if self.shape.logprobs and logprobs is not None:
            if self.shape.chat:
                lp = chat_logprobs(logprobs)
            else:
                lp = text_logprobs(logprobs, self.offsets.get(index, 0))
        self.offsets[index] = self.offsets.get(index, 0) + len(text or "")
        if self.shape.chat:
            delta: dict[str, Any] = {}
            if index not in self.started:
                delta["role"] = "assistant"
                self.started.add(index)
            if text is not None:
                delta["content"] = text
            if calls is not None:
                delta["tool_calls"] = [{"index": i, **c} for i, c in enumerate(calls)]
            choice: dict[str, Any] = {"index": index, "delta": delta}
        else:
            choice = {"index": index, "text": text or ""}
        choice.update(finish_reason=finish, logprobs=lp)
        return _sse({**self.base, "system_fingerprint": version, "choices": [choice]})

    def tail(self, event: InferenceCompleted, include_usage: bool) -> bytes:
        out = []
        for c in event.choices or []:
            finish = c.finish_reason
            calls = tool_calls(c.text) if self.shape.tool_call else None
            if self.shape.tool_call:  # the call goes out whole once it is complete
                if calls:
                    out.append(self.make(c.index, event.model_version, calls=calls))
                    finish = "tool_calls"
                else:
                    out.append(self.make(c.index, event.model_version, text=c.text))
            text = None if self.shape.chat else ""
            out.append(self.make(c.index, event.model_version, text=text, finish=finish))
        if include_usage:
            out.append(_sse({**self.base, "choices": [], "usage": usage(event)}))
        return b"".join([*out, DONE])


async def sse_stream(
    first: Event | Chunk,
    rest: AsyncIterator[Event | Chunk],
    *,
    request_id: str,
    shape: Shape,
    include_usage: bool,
    backlog: Callable[[], int] = lambda: 0,
) -> AsyncIterator[bytes]:
    """OpenAI's stream: one chunk per token batch, a finish chunk per choice, usage, [DONE].

    ``backlog`` says how many replies already wait: while some do (the gateway fell behind
    its reply topic), their chunks join one write instead of one write each."""
    chunks = _Chunks(request_id, shape)
    event: Event | Chunk | None = first
    out: list[bytes] = []
    try:
        while event is not None:
            if isinstance(event, InferenceCompleted):  # the tail goes out in one write
                out.append(chunks.tail(event, include_usage))
                yield b"".join(out)
                return
            if isinstance(event, Chunk) and not shape.tool_call:
                if event.logprobs is None:
                    out.append(chunks.text(event.index, event.model_version, event.delta))
                else:
                    out.append(
                        chunks.make(
                            event.index,
                            event.model_version,
                            text=event.delta,
                            logprobs=event.logprobs,
                        )
                    )
            if out and (not backlog() or len(out) >= 64):
                yield b"".join(out)
                out.clear()
            event = await anext(rest, None)
    except APIError as exc:
        out.append(_sse(exc.body()))
    finally:  # the client may be gone: close the round trip now (it cancels the generation)
        await rest.aclose()  # type: ignore[attr-defined]
    yield b"".join([*out, DONE])
