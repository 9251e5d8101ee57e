"""Events of monitoring and governance."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from shared.events.envelope import Event
from shared.events.registry import register


@register("llmops.drift.detected")
class DriftDetected(Event):
    """A monitored distribution drifted from its baseline."""

    model_name: str = Field(description="Model watched.")
    feature: str = Field(description="What drifted: embeddings, length, topic, ...")
    score: float = Field(description="Drift score.")
    threshold: float = Field(description="Threshold crossed.")
    window: str = Field(description="Window compared, e.g. 1h.")
    model_version: str = Field("", description="Model version whose traffic drifted.")
    method: str = Field("", description="Statistic: psi, ks, jensen_shannon, mmd.")
    p_value: float | None = Field(None, description="p-value of a test statistic (ks, mmd).")
    evidence: dict[str, Any] = Field(
        default_factory=dict, description="Summary numbers behind the score (no record text)."
    )


@register("llmops.alert.raised")
class AlertRaised(Event):
    """An SLO or health alert."""

    name: str = Field(description="Alert name.")
    severity: str = Field("warning", description="info, warning, critical.")
    summary: str = Field(description="One line for a person.")
    labels: dict[str, str] = Field(default_factory=dict, description="Where it applies.")


@register("llmops.audit.recorded")
class AuditRecorded(Event):
    """A privileged action happened."""

    action: str = Field(description="promote, rollback, erase, deanonymize, key.create, ...")
    actor: str = Field(description="Key id or user that acted.")
    allowed: bool = Field(description="Whether it was allowed.")
    target: str = Field("", description="What it acted on.")
    details: dict[str, Any] = Field(default_factory=dict, description="No personal data here.")
