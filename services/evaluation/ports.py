"""What the evaluation domain needs from the outside world."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


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


class RegistryStore(Protocol):
    """The registry's tables (adapters/store.py: sqlmodel on SQLite or PostgreSQL)."""

    def version(self, name: str, version: str) -> Any: ...
    def versions(self, name: str | None = None) -> list[Any]: ...
    def add(self, row: Any) -> None: ...
    def alias(self, name: str, alias: str) -> Any: ...
    def set_alias(self, name: str, alias: str, version: str | None, share: float = 1.0) -> None: ...
    def history(self, name: str) -> list[Any]: ...


class Judge(Protocol):
    def rate(self, prompts: list[str], outputs: list[str]) -> list[int | None]:
        """A 1..5 rating per (prompt, output) by the rubric; None when unparseable."""
        ...
