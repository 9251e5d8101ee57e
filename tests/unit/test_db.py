"""SQLite files forget what was deleted (security finding 5: a shredded key stayed on disk)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from shared.storage import make_engine

pytestmark = pytest.mark.unit


def test_deleted_rows_do_not_stay_in_the_sqlite_file(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    engine = make_engine(f"sqlite:///{path}", create=False)
    secret = "wrapped-subject-key-" + "Z" * 40
    with engine.begin() as conn:
        # on, whatever the SQLite build's default (Debian's is on, others' off)
        assert conn.execute(text("PRAGMA secure_delete")).scalar() == 1
        conn.execute(text("CREATE TABLE k (id INTEGER PRIMARY KEY, v TEXT)"))
        conn.execute(text("INSERT INTO k (v) VALUES (:v)"), {"v": secret})
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM k"))
    with engine.begin() as conn:
        conn.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
    engine.dispose()
    leftovers = b"".join(p.read_bytes() for p in tmp_path.glob("s.db*"))
    assert secret.encode() not in leftovers
