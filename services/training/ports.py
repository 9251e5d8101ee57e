"""What the training domain needs from the outside world."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Progress:
    """One progress report of a trial (every few optimizer steps)."""

    trial: int
    step: int
    total_steps: int
    loss: float | None = None
    learning_rate: float | None = None
    tokens_per_s: float | None = None
    eta_s: float | None = None
    eval_loss: float | None = None


class ProgressSink(Protocol):
    """Receives progress from the training thread (emits events, draws bars, ...)."""

    def __call__(self, progress: Progress) -> None: ...


class PruneCheck(Protocol):
    """Reports a validation loss at a step; raises to stop a trial that looks bad."""

    def __call__(self, step: int, eval_loss: float) -> None: ...
