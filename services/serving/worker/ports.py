"""What the serving logic needs from the outside world, as Protocols."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from shared.events import ClaimCheck, Event
from shared.events.serving import ChatMessage
from shared.wire import Chunk


class InvalidRequestError(ValueError):
    """The request cannot be served as asked (prompt too long, bad parameters)."""


@dataclass(frozen=True)
class Sampling:
    """The sampling parameters the gateway forwards (OpenAI names)."""

    max_tokens: int = 64
    temperature: float = 1.0
    top_p: float = 1.0
    n: int = 1
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    # vLLM's extras
    top_k: int | None = None
    min_p: float = 0.0
    min_tokens: int = 0
    ignore_eos: bool = False
    repetition_penalty: float = 1.0
    logit_bias: dict[str, float] | None = None
    logprobs: int | None = None  # alternatives per token (0: only the chosen token's)
    structured: dict[str, Any] | None = None  # {"json": schema} or {"json_object": True}


@dataclass(frozen=True)
class Delta:
    """New output of one choice since the last delta."""

    index: int
    text: str
    tokens: int
    finish_reason: str | None = None
    logprobs: list[dict[str, Any]] | None = None  # per token: token, logprob, top [[t, lp]]


@dataclass(frozen=True)
class Adapter:
    """A LoRA adapter on a running engine (vLLM's LoRARequest): ``id`` is unique per engine."""

    id: int
    name: str
    location: str


class TextEngine(Protocol):
    """One loaded model version (vLLM's AsyncLLM behind it in production)."""

    def prompt_tokens(self, prompt: str | list[ChatMessage]) -> list[int]:
        """Render (chat template) and tokenize; InvalidRequestError if it cannot fit."""
        ...

    def generate(
        self,
        prompt_ids: list[int],
        sampling: Sampling,
        request_id: str,
        adapter: Adapter | None = None,
    ) -> AsyncIterator[list[Delta]]:
        """Stream deltas (batched per engine step) until every choice finished; with
        ``adapter``, through that LoRA adapter on this engine's base weights."""
        ...

    async def add_adapter(self, adapter: Adapter) -> None:
        """Load a LoRA adapter next to the others, the engine running on (no reload)."""
        ...

    async def remove_adapter(self, adapter: Adapter) -> None: ...

    async def abort(self, request_id: str) -> None: ...

    async def close(self) -> None: ...


class EngineLoader(Protocol):
    async def load(self, location: str) -> TextEngine: ...


class ReplySink(Protocol):
    """Where a worker sends chunks and results (the asking gateway's reply topic)."""

    async def send(self, topic: str, event: Event | Chunk, key: str) -> None:
        """Queue a streamed chunk or an event for ``topic`` (in order; may return before it
        is written)."""
        ...

    async def flush(self) -> None: ...


class ModelLocator(Protocol):
    """Turns a promoted model artifact into a location the engine loads (a local dir)."""

    def resolve(self, artifact: ClaimCheck) -> str:
        """A model dir or a LoRA adapter dir."""
        ...

    def adapter_base(self, location: str) -> str | None:
        """None for a full model; for a LoRA adapter, the base it declares ("" if none)."""
        ...

    def same_model(self, declared: str, location: str) -> bool:
        """Whether ``declared`` (an adapter's base, a path) holds the weights at ``location``."""
        ...
