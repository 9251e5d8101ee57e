"""The hash chain (pure) and the append-only store on SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DatabaseError
from sqlmodel import Session

from services.audit.adapters.store import SqlAuditLog
from services.audit.domain import GENESIS, Entry, entry_hash, next_entry, verify
from shared.events import AuditRecorded


def chain(n: int) -> list[Entry]:
    entries: list[Entry] = []
    for i in range(n):
        event = AuditRecorded(action=f"a{i}", actor="tester", allowed=i % 2 == 0, target=f"t{i}")
        entries.append(next_entry(event, entries[-1] if entries else None))
    return entries


@pytest.mark.unit
def test_an_intact_chain_verifies() -> None:
    entries = chain(5)
    result = verify(entries)
    assert (result.ok, result.entries, result.head) == (True, 5, entries[-1].hash)
    assert entries[0].prev_hash == GENESIS
    assert verify([]).ok


@pytest.mark.unit
def test_any_change_removal_or_reorder_is_named() -> None:
    entries = chain(5)
    changed = [*entries[:2], dataclasses.replace(entries[2], allowed=True, actor="x"), *entries[3:]]
    assert (verify(changed).ok, verify(changed).first_bad) == (False, 3)
    removed = entries[:2] + entries[3:]
    assert verify(removed).first_bad == 4
    reordered = [entries[0], entries[2], entries[1], *entries[3:]]
    assert not verify(reordered).ok
    # recomputing one hash does not help: the next entry's link breaks
    forged = dataclasses.replace(entries[2], target="other")
    forged = dataclasses.replace(forged, hash=entry_hash(forged.prev_hash, forged.body()))
    assert verify([*entries[:2], forged, *entries[3:]]).first_bad == 4


@pytest.mark.unit
def test_the_stored_trail_is_append_only(engine: Engine) -> None:
    with Session(engine) as session:
        trail = SqlAuditLog(session)
        for entry in chain(3):
            trail.append(entry)
        session.commit()
    with Session(engine) as session:
        assert verify(SqlAuditLog(session).entries()).ok
        assert SqlAuditLog(session).last().seq == 3  # type: ignore[union-attr]
        found = SqlAuditLog(session).search(action="a1", actor=None, limit=10, newest_first=True)
        assert [e.seq for e in found] == [2]
    for statement in (
        "UPDATE audit_entry SET allowed = NOT allowed WHERE seq = 2",
        "DELETE FROM audit_entry WHERE seq = 3",
    ):
        with pytest.raises(DatabaseError, match="append-only"), engine.begin() as conn:
            conn.execute(text(statement))
    with Session(engine) as session:
        assert verify(SqlAuditLog(session).entries()).ok
