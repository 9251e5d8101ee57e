"""Model lifecycle facts monitoring keeps: the timeline, loss curves, what data a model uses."""

from __future__ import annotations

from datetime import UTC, datetime

from services.monitoring import metrics
from services.monitoring.adapters.store import TimelineRow, TrainingPointRow
from services.monitoring.ports import Repository
from shared.events import (
    DatasetVersioned,
    ModelEvaluated,
    ModelPromoted,
    ModelRolledBack,
    ModelTrained,
    TrainingProgressed,
    TrainingRequested,
    WorkerHeartbeat,
)


def on_training_requested(event: TrainingRequested, repo: Repository) -> None:
    row = repo.model(event.model_name)
    row.base_model = event.base_model
    row.dataset = row.dataset or event.dataset
    row.dataset_version = row.dataset_version or event.dataset_version
    repo.add(row)


def on_training_progressed(event: TrainingProgressed, repo: Repository) -> None:
    if "loss" in event.metrics:
        metrics.training_loss.set(float(event.metrics["loss"]), {"run_id": str(event.run_id)})
    repo.add(
        TrainingPointRow(
            run_id=str(event.run_id),
            step=event.step,
            total_steps=event.total_steps,
            metrics={k: float(v) for k, v in event.metrics.items()},
        )
    )


def on_model_trained(event: ModelTrained, repo: Repository) -> None:
    row = repo.model(event.model_name)
    row.dataset, row.dataset_version = event.dataset, event.dataset_version
    repo.add(row)
    repo.add(
        _timeline(
            event.occurred_at,
            event.model_name,
            event.model_version,
            "trained",
            f"on {event.dataset}@{event.dataset_version}",
        )
    )


def on_dataset_versioned(event: DatasetVersioned, repo: Repository) -> None:
    """A newer labeled version of a model's dataset is what its next retraining uses."""
    if not event.labeled:
        return
    for row in repo.models():
        if row.dataset == event.dataset:
            row.dataset_version = event.version
            repo.add(row)


def on_model_evaluated(event: ModelEvaluated, repo: Repository) -> None:
    verdict = "passed" if event.passed else "failed"
    scores = ", ".join(f"{k}={v:.3g}" for k, v in sorted(event.scores.items())[:6])
    repo.add(
        _timeline(
            event.occurred_at,
            event.model_name,
            event.model_version,
            "evaluated",
            f"{verdict}: {scores}",
        )
    )


def on_model_promoted(event: ModelPromoted, repo: Repository) -> None:
    row = repo.model(event.model_name)
    if event.alias == "champion":
        row.champion = event.model_version
    repo.add(row)
    repo.add(
        _timeline(
            event.occurred_at,
            event.model_name,
            event.model_version,
            "promoted",
            f"{event.alias} ({event.traffic_share:.0%}) by {event.actor}",
        )
    )


def on_model_rolled_back(event: ModelRolledBack, repo: Repository) -> None:
    row = repo.model(event.model_name)
    row.champion = event.to_version
    repo.add(row)
    repo.add(
        _timeline(
            event.occurred_at,
            event.model_name,
            event.to_version,
            "rolled_back",
            f"from {event.from_version}: {event.reason}",
        )
    )


def heartbeat_view(event: WorkerHeartbeat) -> dict[str, object]:
    return {
        "worker_id": event.worker_id,
        "status": event.status,
        "in_flight": event.in_flight,
        "capacity": event.capacity,
        "models": [f"{m.name}@{m.version} ({m.alias})" for m in event.models],
        "at": event.occurred_at.isoformat(),
        "seen": datetime.now(UTC).isoformat(),
    }


def _timeline(at: datetime, model: str, version: str, kind: str, detail: str) -> TimelineRow:
    return TimelineRow(
        at=at, model_name=model, model_version=version, kind=kind, detail=detail[:1000]
    )
