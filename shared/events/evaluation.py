"""Events of evaluation and the model registry."""

from __future__ import annotations

from pydantic import Field

from shared.events.envelope import ClaimCheck, Event
from shared.events.registry import register


@register("llmops.model.evaluated")
class ModelEvaluated(Event):
    """Evaluation results and gate decisions for a model version."""

    model_name: str = Field(description="Registered model name.")
    model_version: str = Field(description="Version evaluated.")
    scores: dict[str, float] = Field(default_factory=dict, description="Metric -> score.")
    gates: dict[str, bool] = Field(default_factory=dict, description="Gate -> passed.")
    passed: bool = Field(description="Whether every gate passed.")
    report: ClaimCheck | None = Field(None, description="Full report in the artifact store.")
    reasons: dict[str, str] = Field(
        default_factory=dict, description="Gate -> why it passed or failed, in one sentence."
    )
    outcome: str | None = Field(
        None, description="promoted, canary, awaiting-approval or blocked (what the registry did)."
    )
    compared_with: str | None = Field(
        None, description="Champion version the paired regression tests ran against."
    )
    report_url: str | None = Field(None, description="Where the service serves the HTML report.")
    model_card: ClaimCheck | None = Field(
        None, description="Model card (Markdown) in the artifact store."
    )


@register("llmops.model.promoted")
class ModelPromoted(Event):
    """A model version became the champion (or a canary challenger)."""

    model_name: str = Field(description="Registered model name.")
    model_version: str = Field(description="Version promoted.")
    artifact: ClaimCheck | None = Field(None, description="Where the weights are.")
    alias: str = Field("champion", description="champion or challenger.")
    traffic_share: float = Field(
        1.0, ge=0.0, le=1.0, description="Share of traffic for a challenger."
    )
    previous_version: str | None = Field(None, description="Version it replaces.")
    actor: str = Field("system", description="Who promoted (audited).")


@register("llmops.model.rolled-back")
class ModelRolledBack(Event):
    """The champion went back to an earlier version."""

    model_name: str = Field(description="Registered model name.")
    from_version: str = Field(description="Version withdrawn.")
    to_version: str = Field(description="Version now serving.")
    reason: str = Field("manual", description="Why.")
    actor: str = Field("system", description="Who rolled back (audited).")
