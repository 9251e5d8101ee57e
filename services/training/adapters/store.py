"""The training service's tables: runs (the queue and their state), versions seen, policies."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Column, Text
from sqlmodel import JSON, Field, Session, SQLModel, col, select


def _now() -> datetime:
    return datetime.now(UTC)


class TrainingRun(SQLModel, table=True):
    """One run: stored with the request's inbox row, updated by the runner."""

    __tablename__ = "training_run"

    run_id: str = Field(primary_key=True, max_length=36)
    model_name: str = Field(index=True, max_length=200)
    dataset: str = Field(index=True, max_length=200)
    request_json: str = Field(sa_column=Column(Text, nullable=False))
    status: str = Field(default="pending", index=True, max_length=20)
    reason: str | None = Field(default=None, sa_column=Column(Text))
    attempts: int = 0
    model_version: str | None = None
    result: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    created_at: datetime = Field(default_factory=_now)
    updated_at: datetime = Field(default_factory=_now)
    lease_owner: str | None = Field(default=None, max_length=120)  # shared.storage.lease
    lease_until: datetime | None = None


class SeenVersion(SQLModel, table=True):
    """A dataset version announced on the bus: the service's own catalogue."""

    __tablename__ = "training_version"

    dataset: str = Field(primary_key=True, max_length=200)
    version: str = Field(primary_key=True, max_length=64)
    labeled: bool = False
    records: int = 0
    manifest_json: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(default_factory=_now)


class Policy(SQLModel, table=True):
    """How a dataset trains: a request template and auto (every labeled version) or manual."""

    __tablename__ = "training_policy"

    dataset: str = Field(primary_key=True, max_length=200)
    mode: str = Field(default="manual", max_length=10)
    request_json: str = Field(sa_column=Column(Text, nullable=False))
    updated_at: datetime = Field(default_factory=_now)


def find_version(session: Session, dataset: str, version: str) -> SeenVersion | None:
    """The version by exact id or unique prefix; ``latest`` = the newest labeled one."""
    query = select(SeenVersion).where(SeenVersion.dataset == dataset)
    if version in ("", "latest"):
        query = query.where(col(SeenVersion.labeled).is_(True))
        return session.exec(query.order_by(col(SeenVersion.created_at).desc()).limit(1)).first()
    rows = session.exec(query.where(col(SeenVersion.version).startswith(version))).all()
    return rows[0] if len(rows) == 1 else None


def unfinished_runs(session: Session) -> list[TrainingRun]:
    """Pending and running runs, oldest first."""
    return list(
        session.exec(
            select(TrainingRun)
            .where(col(TrainingRun.status).in_(["pending", "running"]))
            .order_by(col(TrainingRun.created_at))
        )
    )
