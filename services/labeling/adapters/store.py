"""The labeling service's tables (prefix ``labeling_``) and small queries over them."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Column, Index, Text, UniqueConstraint
from sqlmodel import JSON, Field, Session, SQLModel, col, func, select


def now() -> datetime:
    return datetime.now(UTC)


class ProjectRow(SQLModel, table=True):
    __tablename__ = "labeling_project"

    name: str = Field(primary_key=True, max_length=64)
    spec: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=now)
    finals_since_cut: int = 0
    last_version: str | None = Field(default=None, max_length=64)


class RecordRow(SQLModel, table=True):
    """An anonymized record this service holds (the curator's copy)."""

    __tablename__ = "labeling_record"

    dataset: str = Field(primary_key=True, max_length=200)
    record_id: str = Field(primary_key=True, max_length=200)
    text: str = Field(sa_column=Column(Text, nullable=False))
    meta: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    entities: list[Any] = Field(default_factory=list, sa_column=Column(JSON))
    subjects: list[str] = Field(default_factory=list, sa_column=Column(JSON))
    source_id: str | None = Field(default=None, max_length=200)
    request_id: str | None = Field(default=None, max_length=36, index=True)
    batch_index: int = 0
    erased: bool = False
    received_at: datetime = Field(default_factory=now)


class TaskRow(SQLModel, table=True):
    __tablename__ = "labeling_task"
    __table_args__ = (
        UniqueConstraint("project", "dataset", "record_id"),
        Index("ix_labeling_task_queue", "project", "status", "priority"),
    )

    id: int | None = Field(default=None, primary_key=True)
    project: str = Field(max_length=64)
    dataset: str = Field(max_length=200)
    record_id: str = Field(max_length=200, index=True)
    status: str = Field(default="open", max_length=16)  # open, conflict, final, erased
    needed: int = 1
    answers: int = 0
    suggestion: Any = Field(default=None, sa_column=Column(JSON))
    confidence: float | None = None
    suggestion_source: str | None = Field(default=None, max_length=200)
    priority: float = 0.0
    prefill: str | None = Field(default=None, sa_column=Column(Text))
    final_label: Any = Field(default=None, sa_column=Column(JSON))
    provenance: str | None = Field(default=None, max_length=200)
    finalized_at: datetime | None = None
    created_at: datetime = Field(default_factory=now)


class AnnotationRow(SQLModel, table=True):
    __tablename__ = "labeling_annotation"
    __table_args__ = (UniqueConstraint("task_id", "annotator"),)

    id: int | None = Field(default=None, primary_key=True)
    task_id: int = Field(index=True)
    project: str = Field(max_length=64, index=True)
    annotator: str = Field(max_length=100)
    label: Any = Field(sa_column=Column(JSON))
    label_key: str = Field(sa_column=Column(Text, nullable=False))
    seconds: float | None = None
    created_at: datetime = Field(default_factory=now)


class LeaseRow(SQLModel, table=True):
    __tablename__ = "labeling_lease"

    task_id: int = Field(primary_key=True)
    annotator: str = Field(primary_key=True, max_length=100)
    expires_at: datetime


class SkipRow(SQLModel, table=True):
    __tablename__ = "labeling_skip"

    task_id: int = Field(primary_key=True)
    annotator: str = Field(primary_key=True, max_length=100)


class AnnotatorRow(SQLModel, table=True):
    __tablename__ = "labeling_annotator"

    name: str = Field(primary_key=True, max_length=100)
    key_hash: str = Field(max_length=64, unique=True)
    role: str = Field(default="annotator", max_length=20)
    created_at: datetime = Field(default_factory=now)
    revoked: bool = False


class CutRow(SQLModel, table=True):
    """A dataset version this service cut (labeled or not)."""

    __tablename__ = "labeling_cut"

    version: str = Field(primary_key=True, max_length=64)
    dataset: str = Field(max_length=200, index=True)
    project: str | None = Field(default=None, max_length=64)
    parent: str | None = Field(default=None, max_length=64)
    records: int = 0
    labeled: bool = False
    record_ids: list[str] = Field(default_factory=list, sa_column=Column(JSON))
    manifest_claim: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(default_factory=now)


class IngestWaitRow(SQLModel, table=True):
    """An ingest request that asked for an unlabeled version: what it waits for."""

    __tablename__ = "labeling_ingest_wait"

    request_id: str = Field(primary_key=True, max_length=36)
    dataset: str = Field(max_length=200)
    request_json: str = Field(sa_column=Column(Text, nullable=False))
    expected: int | None = None  # records emitted, known once IngestCompleted arrives
    failed: bool = False
    version: str | None = Field(default=None, max_length=64)


class LineageRow(SQLModel, table=True):
    """Where an ingested row came from and what became of it, as ingestion reported it
    (``IngestCompleted.lineage``): kept, or dropped as whose duplicate. No text."""

    __tablename__ = "labeling_lineage"

    record_id: str = Field(primary_key=True, max_length=200)
    dataset: str = Field(max_length=200, index=True)
    request_id: str = Field(max_length=36, index=True)
    status: str = Field(max_length=20)
    source: str | None = Field(default=None, sa_column=Column(Text))
    line: int | None = None
    duplicate_of: str | None = Field(default=None, max_length=200, index=True)
    similarity: float | None = None


def chunks(items: Sequence[str], size: int = 500) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def lineage_of(session: Session, record_ids: Sequence[str]) -> dict[str, LineageRow]:
    found: dict[str, LineageRow] = {}
    for part in chunks(record_ids):
        for row in session.exec(select(LineageRow).where(col(LineageRow.record_id).in_(part))):
            found[row.record_id] = row
    return found


def duplicates_of(session: Session, record_ids: Sequence[str]) -> dict[str, list[LineageRow]]:
    """The dropped duplicates of each kept record, in source order."""
    found: dict[str, list[LineageRow]] = {}
    for part in chunks(record_ids):
        rows = session.exec(
            select(LineageRow)
            .where(col(LineageRow.duplicate_of).in_(part))
            .order_by(col(LineageRow.source), col(LineageRow.line), col(LineageRow.record_id))
        )
        for row in rows:
            found.setdefault(row.duplicate_of or "", []).append(row)
    return found


class ModelAskRow(SQLModel, table=True):
    """A task's question to the model (at most one per task): pending until its reply comes
    or its time runs out; the answer is kept beside it (provenance, even when not used)."""

    __tablename__ = "labeling_model_ask"

    task_id: int = Field(primary_key=True)
    project: str = Field(max_length=64, index=True)
    request_id: str = Field(max_length=36, unique=True)
    reply_to: str = Field(max_length=249, index=True)
    model: str = Field(max_length=200)
    state: str = Field(default="pending", max_length=16, index=True)  # pending answered expired
    asked_at: datetime = Field(default_factory=now)
    answered_at: datetime | None = None
    label: Any = Field(default=None, sa_column=Column(JSON))
    confidence: float | None = None
    model_version: str | None = Field(default=None, max_length=200)
    outcome: str | None = Field(default=None, max_length=200)  # auto, human, kept, error:...


class ProjectCommandRow(SQLModel, table=True):
    """The outcome of a project command (``LabelingProjectRequested``), by its event id:
    what the API and the CLI report to whoever issued it."""

    __tablename__ = "labeling_project_command"

    command_id: str = Field(primary_key=True, max_length=36)
    project: str = Field(max_length=200, index=True)
    status: str = Field(max_length=16)  # applied, rejected
    actor: str = Field(max_length=200)
    created: bool = False
    tasks_added: int = 0
    error: str | None = Field(default=None, max_length=2000)
    applied_at: datetime = Field(default_factory=now)


def task_counts(session: Session, project: str) -> dict[str, int]:
    rows = session.exec(
        select(TaskRow.status, func.count())
        .where(TaskRow.project == project)
        .group_by(TaskRow.status)
    ).all()
    return {status: int(count) for status, count in rows}


def latest_cut(session: Session, dataset: str) -> CutRow | None:
    return session.exec(
        select(CutRow).where(CutRow.dataset == dataset).order_by(col(CutRow.created_at).desc())
    ).first()
