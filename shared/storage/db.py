"""The sqlmodel engine factory: SQLite by default, PostgreSQL by URL.

A PostgreSQL URL without ``{service}`` gives each service its own schema in the one
database (``search_path``), so services never share tables.
"""

from __future__ import annotations

import re
import time
import zlib

from sqlalchemy import event, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError
from sqlmodel import SQLModel, create_engine

_SAFE = re.compile(r"[^a-z0-9_]")


def schema_name(service: str) -> str:
    return "llmops_" + _SAFE.sub("_", service.lower())


def make_engine(url: str, *, schema: str | None = None, create: bool = True) -> Engine:
    """Build an engine and create the registered tables.

    ``schema`` only applies to PostgreSQL: the schema is created and put first on the
    search path of every connection.
    """
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            # deleted rows (a shredded subject key, cleared raw text) are zeroed on disk
            cursor.execute("PRAGMA secure_delete=ON")
            cursor.close()

    else:
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
        connect_args = {"options": f"-csearch_path={schema}"} if schema else {}
        engine = create_engine(url, pool_pre_ping=True, connect_args=connect_args)
        if schema:
            with engine.begin() as conn:
                # replicas starting at once: IF NOT EXISTS alone still races on the catalog
                # (unique violation); the transaction-scoped lock makes them take turns
                conn.execute(
                    text("SELECT pg_advisory_xact_lock(:k)"), {"k": zlib.crc32(schema.encode())}
                )
                conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
    if create:
        create_tables(engine)
    return engine


def create_tables(engine: Engine, attempts: int = 5) -> None:
    """create_all, tolerating a peer process creating the same tables at the same moment."""
    for attempt in range(attempts):
        try:
            SQLModel.metadata.create_all(engine)
            return
        except (OperationalError, ProgrammingError, IntegrityError) as exc:
            if "already exists" not in str(exc) and "duplicate" not in str(exc).lower():
                raise
            if attempt == attempts - 1:
                raise
            time.sleep(0.2 * (attempt + 1))


def engine_for(
    settings_url: str, service: str, *, raw_url: str | None = None, module: str | None = None
) -> Engine:
    """Engine for one service, given the URL resolved from settings, its schema migrated.

    The bus chain and the chain beside ``module`` (the process module, whose
    ``migrations/`` folder holds the service's revisions) are applied. Only a process
    without a chain of its own (a test's ad-hoc service name) gets ``create_all`` after
    them: where a chain exists it alone decides the schema, so a table added to the models
    without a revision is missing here and in tests, not created behind the chain's back
    (where the next revision that adds it would then fail on "already exists").
    """
    from shared.storage.migrations import upgrade

    schema = None
    if not settings_url.startswith("sqlite") and "{service}" not in (raw_url or ""):
        schema = schema_name(service)
    engine = make_engine(settings_url, schema=schema, create=False)
    applied = upgrade(engine, service, module)
    if service not in applied:
        create_tables(engine)
    return engine
