"""MonitoringSettings: windows, drift thresholds, SLOs and the retraining policy."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class MonitoringSettings(ServiceSettings):
    """Environment prefix ``LLMOPS_MONITORING_`` (shared fields keep ``LLMOPS_``)."""

    model_config = SettingsConfigDict(
        env_prefix="LLMOPS_MONITORING_", extra="ignore", populate_by_name=True
    )

    service_name: str = Field("monitoring", description="Name for logs, traces and the database.")
    host: str = Field("127.0.0.1", description="Interface of the dashboards and API.")
    port: int = Field(0, description="HTTP port (dashboards, API, /healthz, /metrics); 0: 8200.")
    consumer_group: str = Field("monitoring", description="Consumer group prefix.")

    # windows
    window_size: int = Field(
        100, ge=10, description="Inference records per drift window (tumbling, per version)."
    )
    history: int = Field(2000, ge=100, description="Records kept per model version for stats.")

    # drift thresholds
    psi_threshold: float = Field(0.25, description="PSI above this on a length is drift.")
    ks_alpha: float = Field(0.001, description="KS p-value below this on a length is drift.")
    js_threshold: float = Field(
        0.35, description="Jensen-Shannon distance (base 2) above this on tokens/labels is drift."
    )
    mmd_alpha: float = Field(0.01, description="MMD permutation p-value below this is drift.")
    mmd_permutations: int = Field(200, ge=20, description="Permutations of the MMD test.")
    embeddings: bool = Field(True, description="Run embedding drift (all-MiniLM-L6-v2).")
    embedding_model: str = Field(
        "", description="sentence-transformers model path; empty: the packaged all-MiniLM-L6-v2."
    )

    # SLOs
    slo_latency_p95_ms: float = Field(5000.0, description="p95 latency above this alerts.")
    slo_error_rate: float = Field(0.05, description="Error rate above this alerts.")
    slo_feedback_min: float = Field(0.0, description="Mean feedback rating below this alerts.")
    slo_lag: int = Field(1000, description="Consumer lag of any group above this alerts.")
    slo_dlq_growth: int = Field(1, description="New dead letters per poll at or above alerts.")
    poll_interval_s: float = Field(10.0, description="Seconds between topic/lag/DLQ polls.")

    # retraining policy
    cooldown_s: float = Field(3600.0, description="No second retraining within this many s.")
    min_new_labels: int = Field(0, ge=0, description="Labels needed since the last training.")
    require_approval: bool = Field(False, description="A person approves each retraining.")
    feedback_drop: float = Field(
        0.5, description="Mean rating falling by this much against the reference triggers."
    )
    base_model: str = Field("", description="Base model of retraining runs (empty: as before).")
