"""Leases on job rows: several processes of a service share one job table, and each job
runs in one process at a time.

A service whose handler stores a request as a row and whose background runner works it off
(ingestion's jobs, training's runs, evaluation's queued versions) would, with two processes
on one database, run the same row twice at once. A runner therefore claims a row first: one
conditional UPDATE (atomic on SQLite and on PostgreSQL) takes it when it is free, its lease
ran out, or it is already the claimant's. While the work goes on, a thread renews the lease;
the work's writes are fenced (``fence`` in their transaction): they commit only while the
lease is still the writer's, so a process that stalled past its lease cannot overwrite the
one that took over. A process killed mid-job stops renewing; once its lease has run out,
another process claims the row and resumes from the last checkpoint committed.

The table needs two nullable columns, ``lease_owner`` (string) and ``lease_until`` (an
aware timestamp: a ``datetime | None`` field of a sqlmodel table).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import uuid
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Table, and_, or_, update
from sqlalchemy.engine import Engine
from sqlmodel import Session

log = logging.getLogger(__name__)

OWNER = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
"""This process (a name for logs; the random tail tells a restarted pid apart)."""
DEFAULT_TTL_S = 30.0


class LeaseLostError(RuntimeError):
    """Another process holds the row now: the work stops without writing."""


def _now() -> datetime:
    return datetime.now(UTC)


class Leases:
    """Claims, renewals and fenced writes on the rows of one table."""

    def __init__(self, table: Any, *, ttl_s: float = DEFAULT_TTL_S, owner: str = OWNER) -> None:
        self.table: Table = getattr(table, "__table__", table)
        self.ttl = timedelta(seconds=ttl_s)
        self.owner = owner

    def _where(self, key: Mapping[str, Any]) -> Any:
        return and_(*(self.table.c[name] == value for name, value in key.items()))

    def _set(self, session: Session, condition: Any, **values: Any) -> bool:
        result = session.execute(update(self.table).where(condition).values(**values))
        return bool(result.rowcount == 1)  # type: ignore[attr-defined]

    def claim(self, engine: Engine, key: Mapping[str, Any]) -> bool:
        """Take the row (free, expired or already ours) for a lease; True if ours now."""
        now = _now()
        c = self.table.c
        free = or_(c.lease_owner.is_(None), c.lease_owner == self.owner, c.lease_until < now)
        with Session(engine) as session:
            taken = self._set(
                session,
                and_(self._where(key), free),
                lease_owner=self.owner,
                lease_until=now + self.ttl,
            )
            session.commit()
        return taken

    def holder(self, engine: Engine, key: Mapping[str, Any]) -> str | None:
        """Who holds a live lease on the row (None: nobody, or it ran out)."""
        with Session(engine) as session:
            row = session.execute(self.table.select().where(self._where(key))).first()  # type: ignore[call-overload]
        if row is None or row.lease_owner is None or row.lease_until < _now():
            return None
        return str(row.lease_owner)

    def fence(self, session: Session, key: Mapping[str, Any]) -> None:
        """In the writer's transaction, before commit: extend our lease or raise
        ``LeaseLostError`` (the row is someone else's now; roll back)."""
        c = self.table.c
        if not self._set(
            session,
            and_(self._where(key), c.lease_owner == self.owner),
            lease_until=_now() + self.ttl,
        ):
            raise LeaseLostError(f"{self.table.name} {dict(key)}: the lease is another's now")

    def renew(self, engine: Engine, key: Mapping[str, Any]) -> bool:
        with Session(engine) as session:
            try:
                self.fence(session, key)
            except LeaseLostError:
                return False
            session.commit()
        return True

    def release(self, engine: Engine, key: Mapping[str, Any]) -> None:
        c = self.table.c
        with Session(engine) as session:
            self._set(
                session,
                and_(self._where(key), c.lease_owner == self.owner),
                lease_owner=None,
                lease_until=None,
            )
            session.commit()

    @contextlib.contextmanager
    def held(self, engine: Engine, key: Mapping[str, Any]) -> Iterator[threading.Event]:
        """Renew the lease in a thread while the block runs, release it after. The event it
        yields is set when a renewal found the lease gone (fenced writes fail then too)."""
        lost = threading.Event()
        done = threading.Event()

        def renew() -> None:
            interval = self.ttl.total_seconds() / 3
            while not done.wait(interval):
                try:
                    if not self.renew(engine, key):
                        lost.set()
                        return
                except Exception:  # a busy database: try again at the next tick
                    log.warning("lease renewal failed", exc_info=True)

        thread = threading.Thread(target=renew, name=f"lease-{self.table.name}", daemon=True)
        thread.start()
        try:
            yield lost
        finally:
            done.set()
            thread.join()
            with contextlib.suppress(Exception):
                self.release(engine, key)
