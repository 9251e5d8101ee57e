"""Monitoring's tables and the repository over them (sqlmodel: SQLite or PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Column
from sqlmodel import JSON, Field, Session, SQLModel, col, select


def _now() -> datetime:
    return datetime.now(UTC)


class DriftRow(SQLModel, table=True):
    __tablename__ = "monitoring_drift"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=_now, index=True)
    model_name: str = Field(max_length=200, index=True)
    model_version: str = Field(max_length=200)
    window: int = Field(description="Index of the evaluated window of this version.")
    feature: str = Field(max_length=100)
    method: str = Field(max_length=50)
    score: float
    threshold: float
    p_value: float | None = None
    drifted: bool
    evidence: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))


class AlertRow(SQLModel, table=True):
    __tablename__ = "monitoring_alerts"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=_now, index=True)
    name: str = Field(max_length=200)
    severity: str = Field(max_length=20)
    summary: str = Field(max_length=1000)
    labels: dict[str, str] = Field(default_factory=dict, sa_column=Column(JSON))


class DecisionRow(SQLModel, table=True):
    __tablename__ = "monitoring_decisions"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=_now, index=True)
    model_name: str = Field(max_length=200, index=True)
    trigger: str = Field(max_length=50)
    outcome: str = Field(max_length=50, index=True)
    reason: str = Field(max_length=1000)
    training_request_id: str | None = Field(default=None, max_length=36)
    approved_by: str | None = Field(default=None, max_length=200)


class ModelRow(SQLModel, table=True):
    """What monitoring knows about a registered model: its data and its policy counters."""

    __tablename__ = "monitoring_models"

    model_name: str = Field(primary_key=True, max_length=200)
    dataset: str | None = Field(default=None, max_length=200)
    dataset_version: str | None = Field(default=None, max_length=200)
    base_model: str | None = Field(default=None, max_length=500)
    champion: str | None = Field(default=None, max_length=200)
    new_labels: int = 0
    last_fired_at: datetime | None = None


class TimelineRow(SQLModel, table=True):
    """Model versions' lifecycle: trained, evaluated, promoted, rolled back."""

    __tablename__ = "monitoring_timeline"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(index=True)
    model_name: str = Field(max_length=200)
    model_version: str = Field(max_length=200)
    kind: str = Field(max_length=50)
    detail: str = Field(default="", max_length=1000)


class TrainingPointRow(SQLModel, table=True):
    __tablename__ = "monitoring_training_points"

    id: int | None = Field(default=None, primary_key=True)
    run_id: str = Field(max_length=36, index=True)
    step: int
    total_steps: int
    metrics: dict[str, float] = Field(default_factory=dict, sa_column=Column(JSON))


class LabelingRow(SQLModel, table=True):
    __tablename__ = "monitoring_labeling"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(index=True)
    dataset: str = Field(max_length=200)
    count: int
    agreement: float | None = None


class SqlRepository:
    """The repository port over one session (the unit of work's)."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, row: SQLModel) -> None:
        self.session.add(row)

    def model(self, name: str) -> ModelRow:
        row = self.session.get(ModelRow, name)
        if row is None:
            row = ModelRow(model_name=name)
            self.session.add(row)
        return row

    def models(self) -> list[ModelRow]:
        return list(self.session.exec(select(ModelRow)))

    def decision(self, decision_id: int) -> DecisionRow | None:
        return self.session.get(DecisionRow, decision_id)

    def recent(self, table: type[SQLModel], limit: int = 200) -> list[Any]:
        order = col(table.id).desc()  # type: ignore[attr-defined]
        return list(self.session.exec(select(table).order_by(order).limit(limit)))

    def training_points(self, limit_runs: int = 5) -> list[TrainingPointRow]:
        rows = list(self.session.exec(select(TrainingPointRow).order_by(col(TrainingPointRow.id))))
        runs = list(dict.fromkeys(r.run_id for r in rows))[-limit_runs:]
        return [r for r in rows if r.run_id in runs]
