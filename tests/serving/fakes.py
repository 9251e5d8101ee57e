"""Small fakes of the serving ports (no mock.patch of our own code)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from services.serving.worker.ports import Adapter, Delta, InvalidRequestError, Sampling
from shared.events import ClaimCheck, Event
from shared.events.serving import ChatMessage
from shared.wire import Chunk


class FakeEngine:
    """Echoes the words of the prompt back, one word per step; through a LoRA adapter, each
    word is tagged with the adapter's name (``word@name:version``)."""

    def __init__(self, location: str, step_s: float = 0.0, context: int = 64) -> None:
        self.location = location
        self.step_s = step_s
        self.context = context
        self.aborted: list[str] = []
        self.closed = False
        self.active = 0
        self.adapters: dict[int, Adapter] = {}  # added and not removed
        self.added: list[str] = []  # every adapter ever added, by name

    def prompt_tokens(self, prompt: str | list[ChatMessage]) -> list[int]:
        text = prompt if isinstance(prompt, str) else " ".join(m.content for m in prompt)
        words = text.split()
        if len(words) >= self.context:
            raise InvalidRequestError("prompt too long")
        self._words = words or ["empty"]
        return list(range(len(words)))

    async def generate(
        self,
        prompt_ids: list[int],
        sampling: Sampling,
        request_id: str,
        adapter: Adapter | None = None,
    ) -> AsyncIterator[list[Delta]]:
        if adapter is not None and adapter.id not in self.adapters:
            raise RuntimeError(f"adapter {adapter.name} is not loaded")
        tag = f"@{adapter.name}" if adapter else ""
        self.active += 1
        try:
            words = [f"{w}{tag}" for w in self._words[: sampling.max_tokens]]
            for i, word in enumerate(words):
                await asyncio.sleep(self.step_s)
                if request_id in self.aborted:  # as vLLM: one last output, then the end
                    yield [
                        Delta(index=n, text="", tokens=0, finish_reason="abort")
                        for n in range(sampling.n)
                    ]
                    return
                last = i == len(words) - 1
                finish = (
                    ("length" if len(words) == sampling.max_tokens else "stop") if last else None
                )
                lp = None
                if sampling.logprobs is not None:
                    lp = [{"token": f"{word} ", "logprob": -0.5, "top": [[f"{word} ", -0.5]]}]
                yield [
                    Delta(index=n, text=f"{word} ", tokens=1, finish_reason=finish, logprobs=lp)
                    for n in range(sampling.n)
                ]
        finally:
            self.active -= 1

    async def add_adapter(self, adapter: Adapter) -> None:
        self.adapters[adapter.id] = adapter
        self.added.append(adapter.name)

    async def remove_adapter(self, adapter: Adapter) -> None:
        self.adapters.pop(adapter.id, None)

    async def abort(self, request_id: str) -> None:
        self.aborted.append(request_id)

    async def close(self) -> None:
        self.closed = True


class FakeLoader:
    def __init__(self, step_s: float = 0.0) -> None:
        self.step_s = step_s
        self.loaded: list[str] = []
        self.engines: dict[str, FakeEngine] = {}

    async def load(self, location: str) -> FakeEngine:
        if location.startswith("missing"):
            raise FileNotFoundError(location)
        self.loaded.append(location)
        engine = FakeEngine(location, self.step_s)
        self.engines[location] = engine
        return engine


class FakeSink:
    def __init__(self) -> None:
        self.sent: list[tuple[str, Event | Chunk]] = []

    async def send(self, topic: str, event: Event | Chunk, key: str) -> None:
        self.sent.append((topic, event))

    async def flush(self) -> None:
        return None

    def on(self, topic: str) -> list[Event | Chunk]:
        return [e for t, e in self.sent if t == topic]


class FakeLocator:
    """Artifacts resolve to their URI (the fake engine loads any location). A URI
    ``lora:<base>:<anything>`` is a LoRA adapter declaring ``<base>``; ``same`` lists
    (declared, location) pairs that hold the same weights."""

    def __init__(self, same: set[tuple[str, str]] | None = None) -> None:
        self.resolved: list[str] = []
        self.same = same or set()

    def resolve(self, artifact: ClaimCheck) -> str:
        self.resolved.append(artifact.uri)
        return artifact.uri

    def adapter_base(self, location: str) -> str | None:
        return location.split(":")[1] if location.startswith("lora:") else None

    def same_model(self, declared: str, location: str) -> bool:
        return declared == location or (declared, location) in self.same
