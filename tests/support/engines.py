"""One SQLite and one PostgreSQL engine per test, for the port contract tests."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from shared.storage import make_engine


def engine_for_backend(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Engine]:
    if backend == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'test.db'}")
        yield engine
        engine.dispose()
        return
    pg_url = request.getfixturevalue("pg_url")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    engine = make_engine(pg_url, schema=schema)
    yield engine
    engine.dispose()
    cleanup = make_engine(pg_url, create=False)
    with cleanup.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    cleanup.dispose()
