"""EvaluationSettings (`LLMOPS_EVALUATION_*`): golden sets, generation, gates per model."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field
from pydantic_settings import SettingsConfigDict

from services.evaluation.judge import JudgeConfig
from shared.settings import ServiceSettings

DEFAULT_ADMIN_PORT = 9105


class GateConfig(BaseModel):
    """What a candidate must show before it is promoted."""

    min_accuracy: float = Field(0.0, ge=0, le=1, description="Minimum exact-match accuracy.")
    no_regression: bool = Field(
        True, description="Block a significant regression against the champion."
    )
    alpha: float = Field(0.05, gt=0, lt=1, description="Significance level of paired tests.")
    regression_metrics: list[str] = Field(
        default_factory=lambda: ["accuracy", "rouge_l"],
        description="Paired tests that can block (accuracy: McNemar; others: bootstrap).",
    )
    max_fairness_gap: float | None = Field(
        0.3, ge=0, le=1, description="Largest accuracy gap allowed between slices (None: off)."
    )
    min_slice_size: int = Field(5, ge=1, description="Smaller slices are reported, not gated.")
    fairness_attributes: list[str] = Field(
        default_factory=list, description="Meta keys to slice on (empty: low-cardinality keys)."
    )
    max_latency_ms: float | None = Field(
        None, description="Largest p95 single-request latency in the load test (None: off)."
    )
    require_approval: bool = Field(False, description="Hold a passing candidate for approval.")
    canary_share: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="Promote a passing candidate as a challenger with this "
        "traffic share first (widen with `llmops models promote`); None: champion at once.",
    )


class EvaluationSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="LLMOPS_EVALUATION_", extra="ignore")

    service_name: str = "evaluation"
    consumer_group: str = Field("evaluation", description="Kafka consumer group prefix.")
    gates: GateConfig = Field(default_factory=GateConfig, description="Gates of every model.")
    model_gates: dict[str, GateConfig] = Field(
        default_factory=dict, description="Gates per model name (JSON), over `gates`."
    )
    judge: JudgeConfig | None = Field(
        None, description="LLM-as-judge through the gateway (JSON); None: no judge."
    )
    judge_key: str | None = Field(
        None,
        repr=False,
        description="API key the judge calls the gateway with (role user is enough: "
        "`llmops keys create judge --role user`); default: the admin key where this process "
        "can read it (one host). compose/ gives services no admin key.",
    )
    golden_sets: list[Path] = Field(
        default_factory=list, description="JSON-lines files of LabeledExample rows, added."
    )
    split: str = Field("test", description="Split of the dataset version evaluated.")
    max_examples: int = Field(256, ge=1, description="Examples evaluated at most.")
    max_new_tokens: int = Field(16, ge=1, description="Tokens generated per example.")
    backend: Literal["vllm", "transformers"] = Field(
        "vllm", description="Generation engine (vLLM offline batch; transformers as fallback)."
    )
    max_model_len: int = Field(256, description="Context length of the evaluation engine.")
    kv_cache_mib: int = Field(256, description="KV cache of the evaluation engine (MiB).")
    prompt_template: str = Field("{prompt}", description="How an example becomes a prompt.")
    load_test_requests: int = Field(8, ge=0, description="Single requests timed (0: none).")
    bootstrap_samples: int = Field(1000, ge=100, description="Bootstrap resamples.")
    seed: int = Field(0, description="Seed of the bootstrap.")
    generation_timeout_s: float = Field(900, description="Limit of one generation run.")
    public_url: str | None = Field(
        None, description="Base URL of this service in report links (default: admin host:port)."
    )
    dataset_wait_s: float = Field(
        120, description="How long a version waits for its DatasetVersioned before failing."
    )
    bootstrap_model: str = Field("llmops-tiny", description="Name serving starts with.")
    bootstrap_path: Path | None = Field(
        None, description="Weights of the bootstrap champion (default: built like serving's)."
    )

    def base_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        return f"http://{self.admin_host}:{self.admin_port or DEFAULT_ADMIN_PORT}"

    def gates_for(self, model_name: str) -> GateConfig:
        return self.model_gates.get(model_name, self.gates)
