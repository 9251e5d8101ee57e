"""Events of the training stage."""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import Field

from shared.events.envelope import ClaimCheck, Event
from shared.events.registry import register


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


@register("llmops.training.progressed")
class TrainingProgressed(Event):
    """Progress of a training run."""

    run_id: uuid.UUID = Field(description="Training run id.")
    step: int = Field(description="Optimizer step.")
    total_steps: int = Field(description="Planned steps.")
    metrics: dict[str, float] = Field(default_factory=dict, description="loss, lr, ...")


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
