"""One inference request: pick the version, stream chunks, report the result. No I/O here
beyond the ports (engine, reply sink)."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import fields
from datetime import UTC, datetime
from typing import Any

from services.serving.worker.engines import EnginePool
from services.serving.worker.ports import InvalidRequestError, ReplySink, Sampling
from services.serving.worker.routing import CHAMPION, ModelTable
from shared.events.serving import (
    GeneratedChoice,
    InferenceCompleted,
    InferenceRequested,
)
from shared.wire import Chunk

log = logging.getLogger(__name__)

_SAMPLING_FIELDS = {f.name for f in fields(Sampling)}


def sampling_from(raw: dict[str, Any]) -> Sampling:
    unknown = sorted(set(raw) - _SAMPLING_FIELDS)
    if unknown:  # a newer gateway asking for what this worker cannot do: say so
        raise InvalidRequestError(f"this worker does not support {', '.join(unknown)}")
    values = {k: v for k, v in raw.items() if v is not None}
    if isinstance(values.get("stop"), str):
        values["stop"] = [values["stop"]]
    try:
        return Sampling(**values)
    except TypeError as exc:
        raise InvalidRequestError(str(exc)) from None


def prompt_text(request: InferenceRequested) -> str:
    if request.messages is None:
        return request.prompt
    return "\n".join(f"{m.role}: {m.content}" for m in request.messages)


class InferenceService:
    def __init__(
        self,
        table: ModelTable,
        pool: EnginePool,
        sink: ReplySink,
        *,
        worker_id: str,
        completed_topic: str,
        draw: Callable[[], float] = random.random,
    ) -> None:
        self.table = table
        self.pool = pool
        self.sink = sink
        self.worker_id = worker_id
        self.completed_topic = completed_topic
        self.draw = draw
        self.running: dict[str, Any] = {}  # request id -> the engine generating it

    async def cancel(self, request_id: str) -> bool:
        """Abort a generation whose caller is gone; it ends with finish_reason "abort" and
        is reported (and charged) with the tokens generated so far. False if not ours."""
        engine = self.running.get(request_id)
        if engine is None:
            return False
        await engine.abort(request_id)
        return True

    async def handle(self, request: InferenceRequested) -> InferenceCompleted:
        """Serve one request; every outcome (errors included) ends in an InferenceCompleted."""
        started = time.perf_counter()
        age_s = (datetime.now(UTC) - request.occurred_at).total_seconds()
        remaining = request.deadline_ms / 1000 - max(0.0, age_s)
        result: dict[str, Any] = {"model_version": "", "alias": CHAMPION}
        try:
            if remaining <= 0:
                raise TimeoutError
            version, alias = self.table.choose(request.model, self.draw())
            result.update(model_version=version.version, alias=alias)
            async with self.pool.use(version) as engine, asyncio.timeout(remaining):
                result.update(await self._generate(request, engine, version.version, started))
        except KeyError:
            result.update(error=f"model {request.model!r} is not served", error_type="not_found")
        except InvalidRequestError as exc:
            result.update(error=str(exc), error_type="invalid_request")
        except TimeoutError:
            result.update(error="deadline exceeded", error_type="deadline_exceeded")
        except Exception as exc:
            log.exception("generation failed", extra={"request_id": request.request_id})
            result.update(error=f"{type(exc).__name__}", error_type="internal")
        completed = request.caused(
            InferenceCompleted,
            request_id=request.request_id,
            model=request.model,
            prompt=prompt_text(request),
            latency_ms=(time.perf_counter() - started) * 1000,
            worker_id=self.worker_id,
            key_id=request.key_id,
            producer="serving-worker",
            **result,
        )
        await self.sink.send(request.reply_to, completed, request.request_id)
        await self.sink.send(self.completed_topic, _without_logprobs(completed), request.request_id)
        return completed

    async def _generate(
        self, request: InferenceRequested, engine: Any, version: str, started: float
    ) -> dict[str, Any]:
        prompt = request.messages if request.messages is not None else request.prompt
        prompt_ids = engine.prompt_tokens(prompt)
        sampling = sampling_from(request.sampling)
        texts: dict[int, list[str]] = {i: [] for i in range(sampling.n)}
        tokens: dict[int, int] = dict.fromkeys(range(sampling.n), 0)
        finish: dict[int, str | None] = dict.fromkeys(range(sampling.n))
        ttft_ms: float | None = None
        logprobs: dict[int, list[dict[str, Any]]] = {i: [] for i in range(sampling.n)}
        seq = 0
        self.running[request.request_id] = engine
        try:
            async for deltas in engine.generate(prompt_ids, sampling, request.request_id):
                if ttft_ms is None:
                    ttft_ms = (time.perf_counter() - started) * 1000
                for delta in deltas:
                    texts[delta.index].append(delta.text)
                    tokens[delta.index] += delta.tokens
                    finish[delta.index] = delta.finish_reason or finish[delta.index]
                    logprobs[delta.index].extend(delta.logprobs or [])
                    if request.stream and (delta.text or delta.tokens):
                        chunk = Chunk(  # a C struct: built per token and request
                            request_id=request.request_id,
                            seq=seq,
                            index=delta.index,
                            delta=delta.text,
                            tokens=delta.tokens,
                            model_version=version,
                            logprobs=delta.logprobs,
                        )
                        seq += 1
                        await self.sink.send(request.reply_to, chunk, request.request_id)
        except (asyncio.CancelledError, TimeoutError):
            await engine.abort(request.request_id)
            raise
        finally:
            self.running.pop(request.request_id, None)
        choices = [
            GeneratedChoice(
                index=i,
                text="".join(texts[i]),
                finish_reason=finish[i],
                completion_tokens=tokens[i],
                logprobs=logprobs[i] if sampling.logprobs is not None else None,
            )
            for i in sorted(texts)
        ]
        return {
            "text": choices[0].text,
            "finish_reason": choices[0].finish_reason,
            "choices": choices,
            "prompt_tokens": len(prompt_ids),
            "completion_tokens": sum(tokens.values()),
            "ttft_ms": ttft_ms,
        }


def _without_logprobs(completed: InferenceCompleted) -> InferenceCompleted:
    """The catalogue copy: logprob tokens are raw text pieces that anonymization never sees."""
    if not any(c.logprobs for c in completed.choices):
        return completed
    choices = [c.model_copy(update={"logprobs": None}) for c in completed.choices]
    return completed.model_copy(update={"choices": choices})
