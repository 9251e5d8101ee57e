"""The gateway's logic between HTTP and Kafka: keys, limits, validation, submit, wait."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from opentelemetry import metrics

from services.serving.gateway.config import GatewaySettings
from services.serving.gateway.keys import Action, KeyInfo, RateLimiter, hash_key
from services.serving.gateway.ports import KeyLookup, Publisher, Replies, Reply
from services.serving.gateway.protocol import (
    APIError,
    ChatCompletionRequest,
    CompletionRequest,
    FeedbackRequest,
    SamplingFields,
)
from services.serving.gateway.workers import WorkerDirectory
from shared.events import Event, FeedbackReceived
from shared.events.serving import (
    ChatMessage,
    InferenceCompleted,
    InferenceRequested,
)

_meter = metrics.get_meter("llmops.gateway")
_requests = _meter.create_counter("llmops_gateway_requests", description="Requests by outcome.")
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


@dataclass
class Answer:
    """What ``Gateway.complete`` returns: the whole result, or a stream's first event and
    the rest (chunks, then the final InferenceCompleted)."""

    request_id: str
    model_version: str
    result: InferenceCompleted | None = None
    first: Reply | None = None
    rest: AsyncIterator[Reply] | None = None


class Gateway:
    KEY_CACHE_S = 5.0

    def __init__(
        self,
        settings: GatewaySettings,
        *,
        keys: KeyLookup,
        publisher: Publisher,
        replies: Replies,
        directory: WorkerDirectory,
        reply_topic: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.keys = keys
        self.publisher = publisher
        self.replies = replies
        self.directory = directory
        self.reply_topic = reply_topic
        self.limiter = RateLimiter(clock)
        self.clock = clock
        self._keys_cache: dict[str, tuple[KeyInfo | None, float]] = {}

    # -- use cases ----------------------------------------------------------------------
    async def complete(
        self,
        authorization: str | None,
        body: CompletionRequest | ChatCompletionRequest,
        timeout_s: float | None = None,
    ) -> Answer:
        """One completion: key, limits, validation, the Kafka round trip."""
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
            result = await self.result(pending)
            return Answer(pending.request_id, result.model_version, result=result)
        events = self.events(pending)
        first = await anext(events)  # errors before the first token keep their HTTP status
        version = str(getattr(first, "model_version", ""))
        return Answer(pending.request_id, version, first=first, rest=events)

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

    # -- admission ----------------------------------------------------------------------
    def authenticate(self, authorization: str | None, action: Action) -> KeyInfo:
        scheme, _, secret = (authorization or "").partition(" ")
        key = self._lookup(secret.strip()) if scheme.lower() == "bearer" else None
        if key is None:
            raise APIError(
                401, "Invalid API key.", type_="invalid_request_error", code="invalid_api_key"
            )
        if not key.may(action):
            raise APIError(
                403,
                f"Role {key.role} may not {action}.",
                type_="permission_error",
                code="forbidden",
            )
        return key

    def _lookup(self, secret: str) -> KeyInfo | None:
        """Keys from the store, cached a few seconds (a revocation applies within the TTL)."""
        now = self.clock()
        digest = hash_key(secret)
        cached = self._keys_cache.get(digest)
        if cached is not None and cached[1] > now:
            return cached[0]
        key = self.keys.lookup(secret)
        if len(self._keys_cache) > 10_000:
            self._keys_cache.clear()
        self._keys_cache[digest] = (key, now + self.KEY_CACHE_S)
        return key

    def models(self) -> dict[str, set[str]]:
        return self.directory.models(time.time())  # heartbeats carry wall-clock times

    def validate(self, body: SamplingFields, prompt_chars: int) -> None:
        cfg = self.settings
        max_tokens = body.max_completion_tokens or body.max_tokens or cfg.default_max_tokens
        if max_tokens > cfg.max_tokens_cap:
            raise APIError(
                400,
                f"max_tokens {max_tokens} is over the cap {cfg.max_tokens_cap}.",
                param="max_tokens",
                code="max_tokens_too_large",
            )
        if body.n > cfg.max_n:
            raise APIError(400, f"n {body.n} is over the cap {cfg.max_n}.", param="n")
        if prompt_chars > cfg.max_prompt_chars:
            raise APIError(
                400,
                f"The prompt is {prompt_chars} characters; the limit is {cfg.max_prompt_chars}.",
                param="prompt",
                code="context_length_exceeded",
            )
        served = self.models()
        if not served:
            raise APIError(
                503,
                "No serving worker is available; try again shortly.",
                type_="server_error",
                code="no_worker",
                headers={"Retry-After": "2"},
            )
        if body.model not in served:
            raise APIError(
                404,
                f"The model `{body.model}` does not exist.",
                param="model",
                code="model_not_found",
            )

    def admit(self, key: KeyInfo) -> None:
        refused = self.limiter.check(key)
        if refused is not None:
            which, retry_after = refused
            _requests.add(1, {"outcome": "rate_limited"})
            raise APIError(
                429,
                f"Rate limit reached for {which} per minute on this key.",
                type_="rate_limit_exceeded",
                code=f"rate_limit_{which}",
                headers={"Retry-After": str(retry_after)},
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
        while True:
            event = await self.next_event(pending)
            if first:
                _ttft.record(self.clock() - pending.started, {"model": pending.model})
                first = False
            if isinstance(event, InferenceCompleted):
                self.finish(pending, event, "error" if event.error else "ok")
                if event.error:
                    status, type_ = WORKER_ERRORS.get(event.error_type or "", (500, "server_error"))
                    raise APIError(status, event.error, type_=type_, code=event.error_type)
                yield event
                return
            yield event

    async def result(self, pending: Pending) -> InferenceCompleted:
        async for event in self.events(pending):
            if isinstance(event, InferenceCompleted):
                return event
        raise APIError(500, "no result", type_="server_error")

    def finish(self, pending: Pending, completed: InferenceCompleted | None, outcome: str) -> None:
        self.replies.close(pending.request_id)
        _requests.add(1, {"outcome": outcome})
        _latency.record(self.clock() - pending.started, {"outcome": outcome})
        if completed is not None:
            used = completed.prompt_tokens + completed.completion_tokens
            self.limiter.charge(pending.key, used)
            _tokens.add(completed.prompt_tokens, {"kind": "prompt"})
            _tokens.add(completed.completion_tokens, {"kind": "completion"})


def usage(event: InferenceCompleted) -> dict[str, Any]:
    return {
        "prompt_tokens": event.prompt_tokens,
        "completion_tokens": event.completion_tokens,
        "total_tokens": event.prompt_tokens + event.completion_tokens,
    }
