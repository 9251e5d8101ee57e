"""The outbox relay: publishes committed outbox rows, then deletes them.

A crash between commit and publish loses nothing (the rows stay); a crash between publish
and delete publishes twice, which idempotent consumers absorb. A drain's rows are sent
together (``TracedKafkaBroker.publish_records``), each with the headers it was stored with:
the trace context of the handler that emitted it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from faststream.kafka import KafkaBroker
from sqlalchemy import Table, bindparam, delete, select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from shared.background import BackgroundLoop
from shared.bus.broker import publish_each
from shared.bus.store import OutboxEntry
from shared.storage.db import hold_write_lock
from shared.topics import is_ephemeral

log = logging.getLogger(__name__)
_TABLE: Table = OutboxEntry.__table__  # type: ignore[attr-defined]


class OutboxRelay:
    def __init__(
        self,
        broker: KafkaBroker,
        engine: Engine,
        *,
        batch: int = 500,
        poll_s: float = 1.0,
        linger_s: float = 0.002,
        hot_broker: KafkaBroker | None = None,
    ) -> None:
        self.broker = broker
        # the serving hops' broker (``shared.topics.is_ephemeral``), when not ``broker``
        self.hot_broker = hot_broker
        self.engine = engine
        self.batch = batch
        self.poll_s = poll_s
        self.linger_s = linger_s
        self._lock = asyncio.Lock()
        # built once (no statement or cache key per drain): the oldest pending rows as
        # plain tuples, locked (PostgreSQL: rows another relay holds are skipped), and
        # their delete once sent
        self._pending = (
            select(_TABLE.c.id, _TABLE.c.topic, _TABLE.c.key, _TABLE.c.value, _TABLE.c.headers)
            .order_by(_TABLE.c.id)
            .limit(batch)
            .with_for_update(skip_locked=True)
        )
        self._sent = delete(_TABLE).where(_TABLE.c.id.in_(bindparam("ids", expanding=True)))
        # a short linger lets a busy handler commit a few more rows: one drain sends them
        self._loop = BackgroundLoop(
            "outbox-relay", self._step, interval_s=poll_s, linger_s=linger_s
        )

    def kick(self) -> None:
        self._loop.kick()

    async def start(self) -> None:
        await self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()
        with contextlib.suppress(Exception):
            await self.drain()

    async def _step(self) -> bool:
        await self.drain()
        return False

    async def drain(self) -> int:
        """Publish every pending row, oldest first; returns how many were sent."""
        sent = 0
        async with self._lock:
            while True:
                # plain rows (no ORM objects): the relay only reads and deletes them
                with Session(self.engine) as session:
                    rows = session.execute(self._pending).all()
                    if not rows:
                        return sent
                    # every send is queued (aiokafka batches them per partition, in row
                    # order), then the acks are awaited together before the rows are
                    # deleted; each row keeps the trace context of the handler that emitted
                    # it, and the whole drain is one producer span linked to them
                    await self._publish(
                        [
                            (topic, key, value, headers or {})
                            for _, topic, key, value, headers in rows
                        ]
                    )
                    await hold_write_lock(session)  # waited for off the loop (SQLite)
                    session.execute(self._sent, {"ids": [row[0] for row in rows]})
                    session.commit()
                    sent += len(rows)
                    if len(rows) < self.batch:
                        return sent

    async def _publish(self, records: list[tuple[str, str | None, bytes, dict[str, str]]]) -> None:
        if self.hot_broker is not None and any(is_ephemeral(r[0]) for r in records):
            hot = [r for r in records if is_ephemeral(r[0])]  # each broker keeps row order
            await _publish_on(self.broker, [r for r in records if not is_ephemeral(r[0])])
            await _publish_on(self.hot_broker, hot)
            return
        await _publish_on(self.broker, records)


async def _publish_on(
    broker: KafkaBroker, records: list[tuple[str, str | None, bytes, dict[str, str]]]
) -> None:
    if not records:
        return
    publish_records = getattr(broker, "publish_records", None)
    if publish_records is not None:  # make_broker's: one span, no per-record command
        await publish_records(records)
        return
    await publish_each(broker.publish, records)
