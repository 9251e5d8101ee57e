"""The gateway's logic between HTTP and Kafka: keys, limits, validation, submit, wait."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from opentelemetry import metrics

from services.serving.gateway.admission import Admission, requests_counter
from services.serving.gateway.config import GatewaySettings
from services.serving.gateway.keys import Action, KeyInfo
from services.serving.gateway.ports import Canceller, KeyLookup, Publisher, Replies, Reply
from services.serving.gateway.protocol import (
    APIError,
    ChatCompletionRequest,
    CompletionRequest,
    FeedbackRequest,
    SamplingFields,
)
from services.serving.gateway.workers import WorkerDirectory
from shared.events import Event, FeedbackReceived
from shared.events.serving import ChatMessage, InferenceCompleted, InferenceRequested
from shared.wire import Chunk

log = logging.getLogger(__name__)
_meter = metrics.get_meter("llmops.gateway")
_requests = requests_counter
_tokens = _meter.create_counter("llmops_gateway_tokens", description="Tokens served by kind.")
_ttft = _meter.create_histogram("llmops_gateway_ttft", unit="s", description="Time to 1st token.")
_latency = _meter.create_histogram("llmops_gateway_latency", unit="s", description="Request time.")

WORKER_ERRORS = {
    "invalid_request": (400, "invalid_request_error"),
    "not_found": (404, "invalid_request_error"),
    "deadline_exceeded": (504, "timeout"),
    "overloaded": (503, "server_error"),
}


@dataclass
class Pending:
    request_id: str
    key: KeyInfo
    model: str
    queue: asyncio.Queue[Reply]
    deadline: float  # monotonic
    started: float
    done: bool = False
    tokens_seen: int = 0


@dataclass
class Answer:
    """What ``Gateway.complete`` returns: the whole result, or a stream's first event and
    the rest (chunks, then the final InferenceCompleted)."""

    request_id: str
    model_version: str
    result: InferenceCompleted | None = None
    first: Reply | None = None
    rest: AsyncIterator[Reply] | None = None
    backlog: Callable[[], int] = lambda: 0  # replies already waiting (a stream's writes merge)


class Gateway(Admission):
    """The gateway's use cases; admission (keys, limits, validation) is its base class."""

    def __init__(
        self,
        settings: GatewaySettings,
        *,
        keys: KeyLookup,
        publisher: Publisher,
        replies: Replies,
        cancels: Canceller,
        directory: WorkerDirectory,
        reply_topic: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(settings, keys, directory, clock)
        self.publisher = publisher
        self.replies = replies
        self.cancels = cancels
        self._settling: set[asyncio.Task[None]] = set()
        self.reply_topic = reply_topic

    # -- use cases ----------------------------------------------------------------------
    async def complete(
        self,
        authorization: str | None,
        body: CompletionRequest | ChatCompletionRequest,
        timeout_s: float | None = None,
        disconnected: Callable[[], Awaitable[bool]] | None = None,
    ) -> Answer:
        """One completion: key, limits, validation, the Kafka round trip.

        ``disconnected`` (the route's ``request.is_disconnected``) is asked while a
        non-streamed result is awaited: a caller that left cancels its generation and is
        charged what was generated, as a stream's caller leaving mid-stream is."""
        key = self.authenticate(authorization, Action.INFER)
        if isinstance(body, ChatCompletionRequest):
            messages = [ChatMessage(role=m.role, content=m.text()) for m in body.messages]
            self.validate(body, sum(len(m.content) for m in messages))
            prompt: dict[str, Any] = {"messages": messages}
        else:
            prompts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
            if len(prompts) != 1:
                raise APIError(400, "Send one prompt per request.", param="prompt")
            self.validate(body, len(prompts[0]))
            prompt = {"prompt": prompts[0]}
        self.admit(key)
        pending = await self.submit(key, body, timeout_s=timeout_s, **prompt)
        if not body.stream:
            result = await self.result_unless_gone(pending, disconnected)
            return Answer(pending.request_id, result.model_version, result=result)
        events = self.events(pending)
        first = await anext(events)  # errors before the first token keep their HTTP status
        version = str(getattr(first, "model_version", ""))
        return Answer(
            pending.request_id, version, first=first, rest=events, backlog=pending.queue.qsize
        )

    def list_models(self, authorization: str | None) -> dict[str, set[str]]:
        self.authenticate(authorization, Action.LIST_MODELS)
        return self.models()

    async def feedback(self, authorization: str | None, body: FeedbackRequest) -> Event:
        key = self.authenticate(authorization, Action.FEEDBACK)
        if body.rating is None and not body.correction and not body.comment:
            raise APIError(400, "Give a rating, a correction or a comment.", param="rating")
        return await self.publisher.publish(
            FeedbackReceived(
                response_id=body.response_id,
                rating=body.rating,
                correction=body.correction,
                comment=body.comment,
                key_id=key.key_id,
            )
        )

    # -- the Kafka round trip -----------------------------------------------------------
    async def submit(
        self,
        key: KeyInfo,
        body: SamplingFields,
        *,
        prompt: str = "",
        messages: list[ChatMessage] | None = None,
        timeout_s: float | None = None,
    ) -> Pending:
        timeout = min(timeout_s or self.settings.timeout_s, self.settings.timeout_s)
        request_id = uuid.uuid4().hex
        now = self.clock()
        pending = Pending(
            request_id, key, body.model, self.replies.open(request_id), now + timeout, now
        )
        try:
            await self.publisher.publish(
                InferenceRequested(
                    request_id=request_id,
                    model=body.model,
                    prompt=prompt,
                    messages=messages,
                    sampling=body.sampling(self.settings.default_max_tokens),
                    stream=body.stream,
                    reply_to=self.reply_topic,
                    deadline_ms=int(timeout * 1000),
                    key_id=key.key_id,
                )
            )
        except Exception:
            self.replies.close(request_id)
            raise
        return pending

    async def next_event(self, pending: Pending) -> Reply:
        if not pending.queue.empty():  # the hot path while streaming: no timer, no task
            return pending.queue.get_nowait()
        remaining = pending.deadline - self.clock()
        try:
            if remaining <= 0:
                raise TimeoutError
            async with asyncio.timeout(remaining):
                return await pending.queue.get()
        except TimeoutError:
            self.finish(pending, None, "timeout")
            raise APIError(
                504, "The request outlived its deadline.", type_="timeout", code="deadline_exceeded"
            ) from None

    async def events(self, pending: Pending) -> AsyncIterator[Reply]:
        """Chunks then the final InferenceCompleted (raises APIError on worker errors)."""
        first = True
        try:
            while True:
                event = await self.next_event(pending)
                if first:
                    _ttft.record(self.clock() - pending.started, {"model": pending.model})
                    first = False
                if isinstance(event, InferenceCompleted):
                    self.finish(pending, event, "error" if event.error else "ok")
                    if event.error:
                        status, type_ = WORKER_ERRORS.get(
                            event.error_type or "", (500, "server_error")
                        )
                        raise APIError(status, event.error, type_=type_, code=event.error_type)
                    yield event
                    return
                if isinstance(event, Chunk) and not self._count(pending, event.tokens):
                    raise APIError(  # the stream ends here; the generation is cancelled
                        429,
                        "Token limit per minute of this key reached while streaming; "
                        "the generation was stopped.",
                        type_="rate_limit_exceeded",
                        code="rate_limit_tokens",
                    )
                yield event
        finally:
            if not pending.done:  # the caller left mid-stream
                task = asyncio.get_running_loop().create_task(self._abandon(pending))
                self._settling.add(task)
                task.add_done_callback(self._settling.discard)

    async def _abandon(self, pending: Pending, settle_s: float = 10.0) -> None:
        """Stop the generation in its engine, then charge what was generated: the worker's
        final (aborted) result if it comes in time, else the tokens streamed so far."""
        try:
            await self.cancels.cancel(pending.request_id)
        except Exception as exc:  # the worker's deadline still ends the generation
            log.warning("cancel not sent", extra={"error": repr(exc)})
        completed: InferenceCompleted | None = None
        try:
            async with asyncio.timeout(settle_s):
                while completed is None:
                    event = await pending.queue.get()
                    if isinstance(event, InferenceCompleted):
                        completed = event
                    elif isinstance(event, Chunk):
                        self._count(pending, event.tokens)
        except TimeoutError:
            pass  # charged with the tokens streamed so far
        self.finish(pending, completed, "cancelled")

    def _count(self, pending: Pending, tokens: int) -> bool:
        """Tokens streamed to ``pending``; False once its key is over its token limit."""
        pending.tokens_seen += tokens
        return self.limiter.stream(pending.key, tokens)

    async def result(self, pending: Pending) -> InferenceCompleted:
        async for event in self.events(pending):
            if isinstance(event, InferenceCompleted):
                return event
        raise APIError(500, "no result", type_="server_error")

    async def result_unless_gone(
        self, pending: Pending, disconnected: Callable[[], Awaitable[bool]] | None
    ) -> InferenceCompleted:
        """The result, asking ``disconnected`` every ``disconnect_poll_s`` meanwhile; once
        the caller is gone the wait is cancelled, which abandons the request (``events``:
        the generation is cancelled, what it used is charged), and a 499 ends the route."""
        if disconnected is None:
            return await self.result(pending)
        waiting = asyncio.ensure_future(self.result(pending))
        try:
            while True:
                done, _ = await asyncio.wait({waiting}, timeout=self.settings.disconnect_poll_s)
                if done:
                    return waiting.result()
                if await disconnected():
                    log.info("client left", extra={"request_id": pending.request_id})
                    raise APIError(
                        499,
                        "The client closed the request; its generation was cancelled.",
                        type_="client_closed",
                        code="client_closed_request",
                    )
        finally:
            if not waiting.done():  # the caller left (or this task was cancelled)
                waiting.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await waiting

    def finish(self, pending: Pending, completed: InferenceCompleted | None, outcome: str) -> None:
        """The request is over: its queue freed, its tokens charged (the worker's count,
        else what was streamed before a timeout or an abandon)."""
        pending.done = True
        self.replies.close(pending.request_id)
        _requests.add(1, {"outcome": outcome})
        _latency.record(self.clock() - pending.started, {"outcome": outcome})
        used = pending.tokens_seen
        if completed is not None:
            used = completed.prompt_tokens + completed.completion_tokens
        self.limiter.settle(pending.key, pending.tokens_seen, used)
        if completed is not None:
            _tokens.add(completed.prompt_tokens, {"kind": "prompt"})
            _tokens.add(completed.completion_tokens, {"kind": "completion"})


def usage(event: InferenceCompleted) -> dict[str, Any]:
    return {
        "prompt_tokens": event.prompt_tokens,
        "completion_tokens": event.completion_tokens,
        "total_tokens": event.prompt_tokens + event.completion_tokens,
    }
