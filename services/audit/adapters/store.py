"""The audit trail in the service's database, append-only.

Database triggers refuse UPDATE and DELETE on the table (SQLite and PostgreSQL), so even
the service's own code cannot rewrite history; the hash chain catches edits made around them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

from sqlalchemy import DDL, Column, Text, event
from sqlmodel import Field, Session, SQLModel, col, select

from services.audit.domain import Entry


class AuditEntry(SQLModel, table=True):
    __tablename__ = "audit_entry"

    seq: int = Field(primary_key=True)
    event_id: str = Field(index=True, unique=True)
    occurred_at: str
    producer: str
    action: str = Field(index=True)
    actor: str = Field(index=True)
    allowed: bool
    target: str = Field(sa_column=Column(Text, nullable=False))
    details_json: str = Field(sa_column=Column(Text, nullable=False))
    prev_hash: str
    hash: str


_SQLITE_GUARDS = [
    DDL(
        f"CREATE TRIGGER IF NOT EXISTS audit_entry_no_{op.lower()} BEFORE {op} ON audit_entry "
        "BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END"
    ).execute_if(dialect="sqlite")
    for op in ("UPDATE", "DELETE")
]
_PG_GUARD = DDL(
    "CREATE OR REPLACE FUNCTION audit_entry_append_only() RETURNS trigger AS $$ "
    "BEGIN RAISE EXCEPTION 'the audit trail is append-only'; END $$ LANGUAGE plpgsql; "
    "CREATE TRIGGER audit_entry_append_only BEFORE UPDATE OR DELETE ON audit_entry "
    "FOR EACH ROW EXECUTE FUNCTION audit_entry_append_only()"
).execute_if(dialect="postgresql")
for _guard in (*_SQLITE_GUARDS, _PG_GUARD):
    event.listen(AuditEntry.__table__, "after_create", _guard)  # type: ignore[attr-defined]


def _entry(row: AuditEntry) -> Entry:
    return Entry(
        seq=row.seq,
        event_id=row.event_id,
        occurred_at=row.occurred_at,
        producer=row.producer,
        action=row.action,
        actor=row.actor,
        allowed=row.allowed,
        target=row.target,
        details=json.loads(row.details_json),
        prev_hash=row.prev_hash,
        hash=row.hash,
    )


class SqlAuditLog:
    """``AuditLog`` over one sqlmodel session (the handler's unit of work)."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def last(self) -> Entry | None:
        row = self.session.exec(select(AuditEntry).order_by(col(AuditEntry.seq).desc())).first()
        return _entry(row) if row else None

    def append(self, entry: Entry) -> None:
        body = entry.body()
        details = json.dumps(body.pop("details"), sort_keys=True)
        self.session.add(
            AuditEntry(**body, details_json=details, prev_hash=entry.prev_hash, hash=entry.hash)
        )

    def entries(self) -> Iterator[Entry]:
        rows = self.session.exec(select(AuditEntry).order_by(col(AuditEntry.seq)))
        for row in rows:
            yield _entry(row)

    def search(
        self, *, action: str | None, actor: str | None, limit: int, newest_first: bool
    ) -> list[Entry]:
        query = select(AuditEntry)
        if action:
            query = query.where(col(AuditEntry.action).startswith(action))
        if actor:
            query = query.where(AuditEntry.actor == actor)
        order = col(AuditEntry.seq).desc() if newest_first else col(AuditEntry.seq)
        return [_entry(r) for r in self.session.exec(query.order_by(order).limit(limit))]
