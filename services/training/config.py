"""Settings of the training service (env prefix ``LLMOPS_TRAINING_``)."""

from __future__ import annotations

from typing import Any

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings

DEFAULT_ADMIN_PORT = 9104
CONSUMER_GROUP = "training"


class TrainingSettings(ServiceSettings):
    model_config = SettingsConfigDict(
        env_prefix="LLMOPS_TRAINING_",
        extra="ignore",
        populate_by_name=True,
        env_nested_delimiter="__",
    )

    service_name: str = "training"
    consumer_group: str = Field(
        CONSUMER_GROUP,
        description="Consumer group of training requests; dataset versions use <group>-versions.",
    )
    policies: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Dataset -> training policy (a TrainingRequested's fields: model_name, "
        "base_model, task, lora, hyperparameters, search_trials, search_space, "
        "set_policy=auto|manual). JSON in LLMOPS_TRAINING_POLICIES.",
    )
    default_base_model: str = Field(
        "tiny", description="Base model when a request names none: `tiny` = the built-in Llama."
    )
    checkpoint_steps: int = Field(20, ge=1, description="Save a checkpoint every N steps.")
    progress_every_steps: int = Field(5, ge=1, description="TrainingProgressed every N steps.")
    version_wait_s: float = Field(
        30.0, ge=0, description="How long a request waits for its dataset version to be seen."
    )
    poll_s: float = Field(1.0, gt=0, description="How often the run queue is checked.")
    keep_checkpoints: bool = Field(
        False, description="Keep checkpoints after a run completes (else they are removed)."
    )
