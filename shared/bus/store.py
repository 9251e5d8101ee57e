"""Inbox and outbox tables, and the unit of work that writes them with the state change."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from opentelemetry import propagate
from sqlalchemy import Column, LargeBinary, insert
from sqlmodel import JSON, Field, Session, SQLModel

from shared.events.envelope import Event

if TYPE_CHECKING:
    from shared.authority import Signer
    from shared.topics import Topic


def _now() -> datetime:
    return datetime.now(UTC)


class InboxEntry(SQLModel, table=True):
    """An event a consumer group has applied; the key of idempotent consumption."""

    __tablename__ = "bus_inbox"

    consumer: str = Field(primary_key=True, max_length=200)
    event_id: str = Field(primary_key=True, max_length=36)
    event_type: str = Field(max_length=200)
    handled_at: datetime = Field(default_factory=_now)


class OutboxEntry(SQLModel, table=True):
    """An event committed with a state change, waiting to be relayed to Kafka."""

    __tablename__ = "bus_outbox"

    id: int | None = Field(default=None, primary_key=True)
    topic: str = Field(max_length=249, index=True)
    key: str | None = Field(default=None, max_length=500)
    event_id: str = Field(max_length=36)
    value: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    headers: dict[str, str] = Field(default_factory=dict, sa_column=Column(JSON))
    created_at: datetime = Field(default_factory=_now)


def event_key(event: Event, topic: Topic) -> str | None:
    value = getattr(event, topic.spec.key, None)
    return None if value is None else str(value)


def outbox_row(event: Event, topic: Topic, key: str | None) -> dict[str, Any]:
    """The column values of an outbox row (plain dict: cheap to bulk-insert)."""
    headers: dict[str, str] = {}
    propagate.inject(headers)  # the trace continues from the span that emitted the event
    headers["event_type"] = event.EVENT_TYPE
    headers["schema_version"] = str(event.SCHEMA_VERSION)
    return {
        "topic": topic.value,
        "key": key if key is not None else event_key(event, topic),
        "event_id": str(event.event_id),
        "value": event.to_bytes(),
        "headers": headers,
        "created_at": _now(),
    }


def outbox_entry(event: Event, topic: Topic, key: str | None) -> OutboxEntry:
    return OutboxEntry(**outbox_row(event, topic, key))


def insert_rows(session: Session, model: type[SQLModel], rows: list[dict[str, Any]]) -> None:
    """One multi-row INSERT (no ORM objects: the hot path of a batch)."""
    if rows:
        session.execute(insert(model.__table__), rows)  # type: ignore[attr-defined]


class UnitOfWork:
    """A database session whose emitted events commit together with the state change."""

    def __init__(
        self,
        session: Session,
        producer: str,
        *,
        pending: list[dict[str, Any]] | None = None,
        signer: Signer | None = None,
    ) -> None:
        self.session = session
        self.producer = producer
        self.signer = signer  # commands emitted here are signed with the service's key
        self.emitted: list[Event] = []
        # given a list, emitted rows are collected there and the owner inserts them in bulk
        # before it commits (EventBus batches); else each row is added to the session
        self.pending = pending

    def emit(self, event: Event, *, key: str | None = None, topic: Topic | None = None) -> Event:
        """Queue an event in the outbox (same transaction); returns it as stored."""
        from shared.topics import Topic as _Topic

        if event.producer == "unknown":
            event = event.model_copy(update={"producer": self.producer})
        if self.signer is not None:
            event = self.signer.sign_command(event)
        target = topic or _Topic.for_event(event)
        if self.pending is not None:
            self.pending.append(outbox_row(event, target, key))
        else:
            self.session.add(outbox_entry(event, target, key))
        self.emitted.append(event)
        return event
