"""The sqlmodel engine factory: SQLite by default, PostgreSQL by URL.

A PostgreSQL URL without ``{service}`` gives each service its own schema in the one
database (``search_path``), so services never share tables.

SQLite has one write lock per database file. A connection waits for it (busy timeout,
``SQLITE_BUSY_TIMEOUT_S``) by blocking its thread, so a write started on the event loop
thread must not wait there: see ``hold_write_lock``.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sqlite3
import time
import zlib
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import event, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError
from sqlmodel import Session, SQLModel, create_engine

_SAFE = re.compile(r"[^a-z0-9_]")
SQLITE_BUSY_TIMEOUT_S = 30
"""How long a SQLite statement waits for the database's write lock before "database is
locked"."""
# threads that only wait for SQLite's write lock (never the default executor: handlers
# run their own work there, and a holder must always find a thread to finish with)
_LOCK_WAITERS = ThreadPoolExecutor(max_workers=16, thread_name_prefix="sqlite-write-lock")


def schema_name(service: str) -> str:
    return "llmops_" + _SAFE.sub("_", service.lower())


def make_engine(url: str, *, schema: str | None = None, create: bool = True) -> Engine:
    """Build an engine and create the registered tables.

    ``schema`` only applies to PostgreSQL: the schema is created and put first on the
    search path of every connection.
    """
    if url.startswith("sqlite"):
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_S}
        )

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


async def hold_write_lock(session: Session) -> None:
    """Make ``session`` hold its SQLite database's write lock (``BEGIN IMMEDIATE``), waiting
    for it in a worker thread, not on the event loop; no-op on PostgreSQL, or when the
    session's transaction has written already (it holds the lock).

    Call it before a session on the event loop thread writes (flush, commit, DML). Why:
    sessions of one process hold the write lock across ``await``s (a bus handler writes in
    a worker thread, then the loop commits its transaction). A second session that waited
    for the lock on the loop thread would block the loop, so the first could never commit:
    both stalled for the whole busy timeout, then "database is locked" (the anonymization
    service's erasures, relay and API under load: docs/backbone.md). Waiting in a thread,
    the loop keeps running, the holder commits, the waiter gets the lock.
    """
    if session.get_bind().dialect.name != "sqlite":
        return
    raw = session.connection().connection.driver_connection
    if raw is None or raw.in_transaction:  # pysqlite begins only before DML: it writes
        return
    try:  # uncontended (the usual case): taken at once, on this thread
        raw.execute("PRAGMA busy_timeout=0")
        raw.execute("BEGIN IMMEDIATE")
        return
    except sqlite3.OperationalError as exc:
        if "locked" not in str(exc) and "busy" not in str(exc):
            raise
    finally:
        raw.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_S * 1000}")
    waited = asyncio.get_running_loop().run_in_executor(
        _LOCK_WAITERS, raw.execute, "BEGIN IMMEDIATE"
    )
    try:
        await asyncio.shield(waited)
    except asyncio.CancelledError:
        # the BEGIN finishes before the session is rolled back and its connection pooled
        # again: a connection must not go back to the pool holding the write lock
        with contextlib.suppress(Exception):
            await waited
        raise


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
