"""Training policies: which dataset versions train automatically, and how.

A policy is a TrainingRequested template (model name, base model, task, LoRA,
hyperparameters, search) plus a mode: ``auto`` trains every new labeled version of the
dataset, ``manual`` only records the defaults. Policies come from the settings
(``LLMOPS_TRAINING_POLICIES``) and from `llmops train policy set` (stored, and winning).
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlmodel import Session

from services.training.adapters.store import Policy
from services.training.config import TrainingSettings
from shared.events import DatasetVersioned, TrainingRequested

TEMPLATE_FIELDS = (
    "model_name",
    "base_model",
    "task",
    "lora",
    "hyperparameters",
    "search_trials",
    "search_sampler",
    "search_space",
)


def store_policy(session: Session, request: TrainingRequested) -> None:
    template = request.model_dump(mode="json", include=set(TEMPLATE_FIELDS))
    session.merge(
        Policy(
            dataset=request.dataset,
            mode=request.set_policy or "manual",
            request_json=TrainingRequested.model_validate(
                {**template, "dataset": request.dataset, "dataset_version": ""}
            ).model_dump_json(),
        )
    )


def policy_for(
    session: Session, settings: TrainingSettings, dataset: str
) -> tuple[str, dict[str, Any]] | None:
    """(mode, template fields) of the dataset's policy, stored first, else from settings."""
    row = session.get(Policy, dataset)
    if row is not None:
        template = TrainingRequested.model_validate_json(row.request_json).model_dump(
            include=set(TEMPLATE_FIELDS)
        )
        return row.mode, template
    configured = settings.policies.get(dataset)
    if configured is None:
        return None
    fields = {k: v for k, v in configured.items() if k in TEMPLATE_FIELDS}
    return str(configured.get("set_policy", configured.get("mode", "auto"))), fields


def auto_request(
    session: Session, settings: TrainingSettings, versioned: DatasetVersioned
) -> TrainingRequested | None:
    """The request an auto policy makes of a new labeled version, else None."""
    if not versioned.labeled:
        return None
    found = policy_for(session, settings, versioned.dataset)
    if found is None or found[0] != "auto":
        return None
    template = found[1]
    template.setdefault("model_name", versioned.dataset)
    template.setdefault("base_model", settings.default_base_model)
    return versioned.caused(  # type: ignore[no-any-return]
        TrainingRequested,
        event_id=uuid.uuid5(versioned.event_id, "training"),
        producer="training",
        dataset=versioned.dataset,
        dataset_version=versioned.version,
        reason="policy",
        **template,
    )
