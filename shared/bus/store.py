"""Inbox and outbox tables, and the unit of work that writes them with the state change."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Column, LargeBinary, insert
from sqlmodel import JSON, Field, Session, SQLModel

from shared.bus.instrument import inject_trace_context
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


def outbox_row(
    event: Event, topic: Topic, key: str | None, now: datetime | None = None
) -> dict[str, Any]:
    """The column values of an outbox row (plain dict: cheap to bulk-insert); ``now``:
    its ``created_at`` (one value for a batch's rows: processed once by ``insert_rows``)."""
    headers: dict[str, str] = {}
    inject_trace_context(headers)  # the trace goes on from the span that emitted it
    headers["event_type"] = event.EVENT_TYPE
    headers["schema_version"] = str(event.SCHEMA_VERSION)
    return {
        "topic": topic.value,
        "key": key if key is not None else event_key(event, topic),
        "event_id": str(event.event_id),
        "value": event.to_bytes(),
        "headers": headers,
        "created_at": now or _now(),
    }


def outbox_entry(event: Event, topic: Topic, key: str | None) -> OutboxEntry:
    return OutboxEntry(**outbox_row(event, topic, key))


def insert_rows(session: Session, model: type[SQLModel], rows: list[dict[str, Any]]) -> None:
    """One executemany INSERT of ``rows`` (plain dicts with the same keys; no ORM objects:
    the hot path of a batch).

    The statement is compiled once per (dialect, table, columns) and the rows go to the
    driver as they are after each column type's bind processor (``_Prepared``): Core's
    ``execute`` would build the parameters of every row through the compiled statement
    (~15 us a row on SQLite, more than the insert itself). Rows that leave out a column
    with a Python-side default go through Core, which applies it."""
    if not rows:
        return
    table = model.__table__  # type: ignore[attr-defined]
    connection = session.connection()
    prepared = _prepared(connection.dialect, table, tuple(rows[0]))
    if prepared is None:
        session.execute(insert(table), rows)
        return
    connection.exec_driver_sql(prepared.sql, prepared.parameters(rows))


def insert_returning_ids(
    session: Session, model: type[SQLModel], rows: list[dict[str, Any]]
) -> list[int] | None:
    """INSERT ``rows`` (as ``insert_rows``) and return the ids the table gave them (in no
    particular order), on SQLite: multi-row ``INSERT ... VALUES (..), (..) RETURNING id``
    statements of up to ``_RETURNING_CHUNK`` rows (SQLite's executemany returns no rows).
    None, and nothing inserted, on other databases or when the rows need Core."""
    if not rows:
        return []
    connection = session.connection()
    dialect = connection.dialect
    if dialect.name != "sqlite" or not dialect.positional:
        return None
    table = model.__table__  # type: ignore[attr-defined]
    prepared = _prepared(dialect, table, tuple(rows[0]))
    if prepared is None:
        return None
    ids: list[int] = []
    for start in range(0, len(rows), _RETURNING_CHUNK):
        chunk = rows[start : start + _RETURNING_CHUNK]
        values = prepared.values_sql
        sql = f"{prepared.sql}{(', ' + values) * (len(chunk) - 1)} RETURNING id"
        flat = [value for row in prepared.parameters(chunk) for value in row]
        ids.extend(r[0] for r in connection.exec_driver_sql(sql, tuple(flat)))
    return ids


def delete_ids(session: Session, model: type[SQLModel], ids: list[int]) -> None:
    """DELETE the rows of ``ids`` (integer primary key ``id``) in statements of up to
    ``_RETURNING_CHUNK`` ids: plain SQL on SQLite (no expanding ``IN`` rendered per call),
    Core elsewhere."""
    table = model.__table__  # type: ignore[attr-defined]
    connection = session.connection()
    for start in range(0, len(ids), _RETURNING_CHUNK):
        chunk = ids[start : start + _RETURNING_CHUNK]
        if connection.dialect.name == "sqlite" and connection.dialect.paramstyle == "qmark":
            marks = ", ".join("?" * len(chunk))
            connection.exec_driver_sql(
                f"DELETE FROM {table.name} WHERE id IN ({marks})", tuple(chunk)
            )
        else:
            connection.execute(table.delete().where(table.c.id.in_(chunk)))


# rows per multi-row INSERT ... RETURNING: 500 rows of ~6 columns stay far below SQLite's
# limit on host parameters (32,766 since 3.32)
_RETURNING_CHUNK = 500


class _Prepared:
    """An INSERT compiled for one dialect and column list, with each column's bind
    processor: ``parameters`` turns rows into what the driver's executemany takes."""

    __slots__ = ("names", "positional", "processors", "sql", "values_sql")

    def __init__(self, sql: str, names: list[str], processors: list[Any], positional: bool):
        self.sql = sql
        self.values_sql = sql[sql.rindex(" VALUES ") + len(" VALUES ") :]  # "(?, ?, ...)"
        self.names = names
        self.processors = processors
        self.positional = positional

    def parameters(self, rows: list[dict[str, Any]]) -> list[Any]:
        columns = list(zip(self.names, self.processors, strict=True))
        last: dict[str, tuple[Any, Any]] = {}  # a value shared by rows is processed once
        out: list[Any] = []
        for row in rows:
            values = []
            for name, process in columns:
                value = row[name]
                if process is not None and value is not None:
                    seen = last.get(name)
                    if seen is not None and seen[0] is value:
                        value = seen[1]
                    else:
                        processed = process(value)
                        last[name] = (value, processed)
                        value = processed
                values.append(value)
            out.append(
                tuple(values) if self.positional else dict(zip(self.names, values, strict=True))
            )
        return out


_PREPARED: dict[tuple[Any, ...], _Prepared | None] = {}


def _prepared(dialect: Any, table: Any, keys: tuple[str, ...]) -> _Prepared | None:
    key = (type(dialect), dialect.paramstyle, dialect.positional, table, keys)
    if key in _PREPARED:
        return _PREPARED[key]
    prepared = None
    given = set(keys)
    defaults = {c.key for c in table.columns if c.default is not None}
    if given <= set(table.columns.keys()) and defaults <= given:
        compiled = insert(table).compile(dialect=dialect, column_keys=list(keys))
        names = list(compiled.positiontup or ()) if dialect.positional else list(keys)
        if set(names) == given and len(names) == len(keys):
            processors = [
                table.columns[name].type.dialect_impl(dialect).bind_processor(dialect)
                for name in names
            ]
            prepared = _Prepared(compiled.string, names, processors, dialect.positional)
    _PREPARED[key] = prepared
    return prepared


class UnitOfWork:
    """A database session whose emitted events commit together with the state change."""

    def __init__(
        self,
        session: Session,
        producer: str,
        *,
        pending: list[dict[str, Any]] | None = None,
        signer: Signer | None = None,
        now: datetime | None = None,
    ) -> None:
        self.session = session
        self.producer = producer
        self.signer = signer  # commands emitted here are signed with the service's key
        self.emitted: list[Event] = []
        # given a list, emitted rows are collected there and the owner inserts them in bulk
        # before it commits (EventBus batches); else each row is added to the session
        self.pending = pending
        self.now = now  # the created_at of the rows emitted (None: when each is emitted)

    def emit(self, event: Event, *, key: str | None = None, topic: Topic | None = None) -> Event:
        """Queue an event in the outbox (same transaction); returns it as stored."""
        from shared.topics import Topic as _Topic

        if event.producer == "unknown":
            event = event.model_copy(update={"producer": self.producer})
        if self.signer is not None:
            event = self.signer.sign_command(event)
        target = topic or _Topic.for_event(event)
        if self.pending is not None:
            self.pending.append(outbox_row(event, target, key, self.now))
        else:
            self.session.add(outbox_entry(event, target, key))
        self.emitted.append(event)
        return event
