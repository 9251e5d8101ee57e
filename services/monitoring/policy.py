"""The retraining policy: when drift or a feedback drop asks for retraining, may it fire?

Pure decision logic. The outcome of every trigger is a :class:`Decision`, recorded and
audited whatever it is, so an operator can see why retraining did or did not happen.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum


class Outcome(StrEnum):
    FIRED = "fired"
    COOLDOWN = "suppressed_cooldown"
    WAITING_LABELS = "waiting_for_labels"
    WAITING_DATASET = "waiting_for_dataset"
    AWAITING_APPROVAL = "awaiting_approval"


@dataclass(frozen=True)
class PolicyConfig:
    cooldown_s: float
    min_new_labels: int
    require_approval: bool


@dataclass(frozen=True)
class PolicyState:
    """What the policy knows about one model when a trigger arrives."""

    model_name: str
    last_fired_at: datetime | None
    new_labels: int
    dataset: str | None
    dataset_version: str | None
    pending_approval: bool = False


@dataclass(frozen=True)
class Decision:
    model_name: str
    trigger: str
    outcome: Outcome
    reason: str
    at: datetime

    @property
    def fires(self) -> bool:
        return self.outcome is Outcome.FIRED


def decide(
    config: PolicyConfig, state: PolicyState, trigger: str, now: datetime, *, approved: bool = False
) -> Decision:
    """The outcome of one trigger (``drift``, ``feedback`` or ``approval``)."""

    def outcome(kind: Outcome, reason: str) -> Decision:
        return Decision(state.model_name, trigger, kind, reason, now)

    if state.last_fired_at is not None:
        ready_at = state.last_fired_at + timedelta(seconds=config.cooldown_s)
        if now < ready_at:
            left = (ready_at - now).total_seconds()
            return outcome(
                Outcome.COOLDOWN,
                f"last retraining {state.last_fired_at:%H:%M:%S}; cool-down ends in {left:.0f} s",
            )
    if state.new_labels < config.min_new_labels:
        return outcome(
            Outcome.WAITING_LABELS,
            f"{state.new_labels} of {config.min_new_labels} new labels since the last training",
        )
    if not state.dataset or not state.dataset_version:
        return outcome(
            Outcome.WAITING_DATASET, "no labeled dataset version known for this model yet"
        )
    if config.require_approval and not approved:
        return outcome(Outcome.AWAITING_APPROVAL, "retraining needs an operator's approval")
    via = "approved by an operator" if approved else "policy allows it"
    return outcome(Outcome.FIRED, f"retrain on {state.dataset}@{state.dataset_version} ({via})")
