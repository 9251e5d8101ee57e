"""The worker's routing table, kept in its database so a restart serves what it served."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Column
from sqlalchemy.engine import Engine
from sqlmodel import JSON, Field, Session, SQLModel


class ServingSnapshot(SQLModel, table=True):
    __tablename__ = "serving_snapshot"

    id: str = Field(primary_key=True, max_length=100)
    body: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    applied_until: datetime | None = None
    updated_at: datetime = Field(default_factory=lambda: datetime.now(UTC))


SNAPSHOT_ID = "routes"


def load_snapshot(engine: Engine) -> ServingSnapshot | None:
    with Session(engine) as session:
        return session.get(ServingSnapshot, SNAPSHOT_ID)


def snapshot_row(body: dict[str, Any], applied_until: datetime | None) -> ServingSnapshot:
    return ServingSnapshot(id=SNAPSHOT_ID, body=body, applied_until=applied_until)
