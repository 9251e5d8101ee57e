"""What the evaluation domain needs from the outside world."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class Generation:
    """One model's answers on the evaluation prompts."""

    outputs: list[str]
    nll: list[float | None]  # mean NLL of each reference completion (perplexity = exp)
    latency_ms: list[float] = field(default_factory=list)  # the short load test
    seconds: float = 0.0


class Generator(Protocol):
    def generate(
        self, model_dirs: list[str], prompts: list[str], references: list[str]
    ) -> list[Generation]:
        """Per model: greedy outputs for every prompt (one batch), per-example reference NLL."""
        ...


class ModelResolver(Protocol):
    def resolve(self, artifact_json: str | None, name: str, version: str) -> str:
        """A local model directory for a registered version."""
        ...
