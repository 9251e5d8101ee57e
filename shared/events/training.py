"""Events of the training stage."""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import Field

from shared.events.envelope import ClaimCheck, Event
from shared.events.registry import register

RUN_STATUSES = ("queued", "running", "trial_completed", "trial_pruned", "completed", "failed")


@register("llmops.training.requested")
class TrainingRequested(Event):
    """Command: train a model on a dataset version."""

    model_name: str = Field(description="Registered model name.")
    dataset: str = Field(description="Dataset name.")
    dataset_version: str = Field(description="Dataset version to train on.")
    base_model: str = Field(description="HF id or local path of the base model.")
    hyperparameters: dict[str, Any] = Field(default_factory=dict, description="Training config.")
    search_trials: int = Field(0, description="Hyperparameter search trials (0: none).")
    reason: str = Field("manual", description="Why: manual, drift, feedback, erasure.")
    task: str | None = Field(
        None, description="sft or dpo; default: dpo for preference versions, else sft."
    )
    lora: bool = Field(False, description="Train a LoRA adapter (merged for serving).")
    search_sampler: str = Field("tpe", description="Optuna sampler: tpe, random or grid.")
    search_space: dict[str, Any] = Field(
        default_factory=dict,
        description="Hyperparameter -> {low, high, log} | {choices}; default: a small space.",
    )
    exclude_records: list[str] = Field(
        default_factory=list, description="Record ids left out (e.g. erased subjects' records)."
    )
    set_policy: str | None = Field(
        None,
        description="auto or manual: store this request as the dataset's training policy "
        "(auto: train on every new labeled version) instead of training now.",
    )


@register("llmops.training.progressed")
class TrainingProgressed(Event):
    """Progress of a training run."""

    run_id: uuid.UUID = Field(description="Training run id.")
    step: int = Field(description="Optimizer step.")
    total_steps: int = Field(description="Planned steps.")
    metrics: dict[str, float] = Field(default_factory=dict, description="loss, lr, ...")
    status: str = Field(
        "running",
        description="queued, running, trial_completed, trial_pruned, completed or failed.",
    )
    reason: str | None = Field(None, description="Why the run failed (status failed).")
    request_id: uuid.UUID | None = Field(None, description="event_id of the request.")
    model_name: str | None = Field(None, description="Model being trained.")
    trial: int | None = Field(None, description="Optuna trial number (0 without a search).")
    trials: int | None = Field(None, description="Planned trials.")
    loss: float | None = Field(None, description="Latest training loss.")
    learning_rate: float | None = Field(None, description="Current learning rate.")
    tokens_per_s: float | None = Field(None, description="Training throughput (tokens/s).")
    eta_s: float | None = Field(None, description="Estimated seconds left in this trial.")


@register("llmops.model.trained")
class ModelTrained(Event):
    """A model version was trained and stored."""

    run_id: uuid.UUID = Field(description="Training run id.")
    model_name: str = Field(description="Registered model name.")
    model_version: str = Field(description="Version id of the new model.")
    artifact: ClaimCheck = Field(description="Model weights + tokenizer (a directory archive).")
    dataset: str = Field(description="Dataset trained on.")
    dataset_version: str = Field(description="Dataset version trained on.")
    metrics: dict[str, float] = Field(default_factory=dict, description="Final training metrics.")
    request_id: uuid.UUID | None = Field(None, description="event_id of the request.")
    base_model: str | None = Field(None, description="Base model (HF id, path or `tiny`).")
    task: str | None = Field(None, description="sft or dpo.")
    lora: bool = Field(False, description="Whether a LoRA adapter was trained (then merged).")
    parameters: dict[str, Any] = Field(
        default_factory=dict, description="Hyperparameters of the chosen trial."
    )
    trial: int | None = Field(None, description="Optuna trial that became the model.")
    trials: list[dict[str, Any]] = Field(
        default_factory=list, description="Every trial: number, state, params, value."
    )
    code_version: str | None = Field(None, description="Platform version (and git commit).")
    record_ids: list[str] = Field(
        default_factory=list, description="Records of the train split that trained it."
    )
    subject_ids: list[str] = Field(
        default_factory=list, description="Keyed subject ids whose records trained it."
    )
    adapter: ClaimCheck | None = Field(None, description="LoRA adapter (tarball), if any.")
    loss_curve: ClaimCheck | None = Field(None, description="Loss curve (self-contained HTML).")
    loss_curve_png: ClaimCheck | None = Field(None, description="Loss curve image (PNG).")
