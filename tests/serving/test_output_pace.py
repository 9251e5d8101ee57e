"""The worker's engine gathers a request's tokens per output for as long as its reply frames
would hold them anyway (vLLM's per-request ``stream_interval``), learned from the engine's
own pace: a fake AsyncLLM and clock, the real vLLM ``SamplingParams``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from services.serving.worker.adapters.vllm_engine import OutputPace, VllmEngine
from services.serving.worker.ports import Sampling


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Choice:
    token_ids: list[int]
    text: str
    index: int = 0
    finish_reason: str | None = None
    logprobs: Any = None


@dataclass
class Output:
    outputs: list[Choice]


@dataclass
class FakeLLM:
    """Streams ``tokens`` tokens per request, ``params.stream_interval`` per output after
    the first, advancing the clock ``step_s`` per token (the engine's pace)."""

    clock: Clock
    step_s: float
    tokens: int = 32
    tokenizer: Any = None
    params: list[Any] = field(default_factory=list)

    async def generate(self, prompt: Any, params: Any, **_: Any) -> AsyncIterator[Output]:
        self.params.append(params)
        self.clock.now += 0.05  # queued, then the prefill: not the decode pace
        yield Output([Choice([0], "a")])
        left = self.tokens - 1
        while left:
            n = min(params.stream_interval, left)
            self.clock.now += n * self.step_s
            left -= n
            yield Output([Choice([0] * n, "a" * n, finish_reason=None if left else "length")])


async def _stream(engine: VllmEngine, request_id: str) -> list[int]:
    sizes = []
    async for deltas in engine.generate([1, 2, 3], Sampling(max_tokens=32), request_id):
        sizes.append(deltas[0].tokens)
    return sizes


def test_the_pace_gathers_what_the_interval_holds_between_1_and_most() -> None:
    pace = OutputPace(0.020, most=16)
    assert pace.tokens() == 1  # nothing measured yet: every token
    pace.observe(0.010, 2)  # 5 ms per token
    assert pace.tokens() == 4
    fast = OutputPace(0.020, most=16)
    fast.observe(0.001, 10)  # 0.1 ms per token: 200 would fit, the most is 16
    assert fast.tokens() == 16
    slow = OutputPace(0.020)
    slow.observe(0.050, 1)  # a step longer than the interval: every token
    assert slow.tokens() == 1
    off = OutputPace(0.0)
    off.observe(0.001, 10)
    assert off.tokens() == 1
    pace.observe(0.0, 0)  # nothing generated: no change
    assert pace.tokens() == 4


def test_the_pace_follows_the_engine_as_it_slows() -> None:
    pace = OutputPace(0.020)
    pace.observe(0.002, 1)
    assert pace.tokens() == 10
    for _ in range(40):
        pace.observe(0.010, 1)
    assert pace.tokens() == 2


async def test_requests_after_the_first_gather_tokens_at_the_engine_pace() -> None:
    clock = Clock()
    llm = FakeLLM(clock, step_s=0.005)
    engine = VllmEngine(llm, max_model_len=512, pace=OutputPace(0.020, clock=clock))
    first = await _stream(engine, "r1")
    assert llm.params[0].stream_interval == 1  # no pace known yet
    assert first == [1] * 32
    second = await _stream(engine, "r2")
    assert llm.params[1].stream_interval == 4  # 20 ms at 5 ms per token
    assert second[0] == 1  # the first token at once
    assert sum(second) == 32  # nothing lost
    assert second[1:] == [4] * 7 + [3]  # then 31 tokens in outputs of 4


async def test_without_an_interval_every_token_is_an_output() -> None:
    clock = Clock()
    llm = FakeLLM(clock, step_s=0.005)
    engine = VllmEngine(llm, max_model_len=512, pace=OutputPace(0.0, clock=clock))
    await _stream(engine, "r1")
    assert await _stream(engine, "r2") == [1] * 32
    assert [p.stream_interval for p in llm.params] == [1, 1]
