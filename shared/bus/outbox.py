"""The outbox relay: publishes committed outbox rows, then deletes them.

A crash between commit and publish loses nothing (the rows stay); a crash between publish
and delete publishes twice, which idempotent consumers absorb. A drain's rows are sent
together (``TracedKafkaBroker.publish_records``), each with the headers it was stored with:
the trace context of the handler that emitted it.

From memory (SQLite): the EventBus hands the relay the rows a batch has just committed
(``send``: their ids from ``INSERT ... RETURNING`` and the records in emission order), and
the relay sends them without reading them back; their delete goes into the next batch's
transaction (``take_sent``), or the relay's next drain. Whenever rows may be in the table
that were not handed over (at start, after another writer's ``kick``, after a failed send)
the relay drains the table first, and its periodic drain (every ``poll_s``) stays for rows
of other processes and crashes. Rows are handed over synchronously right after their commit,
so they go out in commit order, as a drain (id order) sends them. PostgreSQL keeps the
drain alone (replicas' relays lock the rows they send: ``SKIP LOCKED``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

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


Record = tuple[str, str | None, bytes, dict[str, str]]  # (topic, key, value, headers)


@dataclass(slots=True)
class Committed:
    """Outbox rows of one committed transaction, handed over to be sent from memory."""

    ids: list[int]
    records: list[Record]  # in emission order


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
        # sending from memory (see the module's doc): SQLite only
        self.from_memory = engine.dialect.name == "sqlite"
        self._ready: list[Committed] = []  # committed, handed over, not sent yet
        self._sent: set[int] = set()  # sent from memory, rows not deleted yet
        self._backlog = True  # rows may be in the table that were not handed over
        # built once (no statement or cache key per drain): the oldest pending rows as
        # plain tuples, locked (PostgreSQL: rows another relay holds are skipped), and
        # their delete once sent
        self._pending = (
            select(_TABLE.c.id, _TABLE.c.topic, _TABLE.c.key, _TABLE.c.value, _TABLE.c.headers)
            .order_by(_TABLE.c.id)
            .limit(batch)
            .with_for_update(skip_locked=True)
        )
        self._sent_rows = delete(_TABLE).where(_TABLE.c.id.in_(bindparam("ids", expanding=True)))
        # a short linger lets a busy handler commit a few more rows: one drain sends them
        self._loop = BackgroundLoop(
            "outbox-relay", self._step, interval_s=poll_s, linger_s=linger_s
        )

    def kick(self) -> None:
        """Rows were committed (not handed over): the next step drains the table."""
        self._backlog = True
        self._loop.kick()

    async def send(self, committed: Committed) -> None:
        """Hand rows just committed over (call right after the commit, on the event loop,
        before any ``await``: hand-overs keep commit order) and send them now, with any
        handed over before them; returns once they are acknowledged, or left to a drain
        (another writer's rows may be older: ``kick``, a failed send). Never raises for a
        failed send: the rows are committed, a drain sends them (logged)."""
        if not self.from_memory:
            self.kick()
            return
        self._ready.append(committed)
        try:
            await self._send_ready()
        except Exception:
            log.warning("sending committed rows failed; a drain sends them", exc_info=True)
        if self._backlog or self._ready:
            self._loop.kick()

    def take_sent(self) -> list[int]:
        """The ids of rows sent from memory and not deleted yet, for the caller's transaction
        to delete; ``return_sent`` them if it does not commit."""
        taken = list(self._sent)
        self._sent.clear()
        return taken

    def return_sent(self, ids: list[int]) -> None:
        self._sent.update(ids)

    async def start(self) -> None:
        await self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()
        with contextlib.suppress(Exception):
            await self.drain()

    async def _step(self) -> bool:
        if self._ready and not self._backlog:
            await self._send_ready()
        else:  # a kick from another writer, or the periodic drain
            await self.drain()
        return False

    async def _send_ready(self) -> None:
        """Send the rows handed over, in hand-over order; their ids wait in ``_sent`` for
        the next batch's transaction or drain to delete them."""
        async with self._lock:
            if self._backlog:  # a drain sends them with the rows before them
                return
            ready, self._ready = self._ready, []
            if not ready:
                return
            try:
                await self._publish([record for c in ready for record in c.records])
            except BaseException:
                self._backlog = True  # the rows stay in the table: a drain retries them
                raise
            for committed in ready:
                self._sent.update(committed.ids)

    async def drain(self) -> int:
        """Publish every pending row, oldest first; returns how many were sent."""
        async with self._lock:
            self._backlog = False  # what the table holds now is this drain's
            try:
                return await self._drain()
            except BaseException:
                self._backlog = True
                raise

    async def _drain(self) -> int:
        sent = 0
        while True:
            # plain rows (no ORM objects): the relay only reads and deletes them
            with Session(self.engine) as session:
                rows = session.execute(self._pending).all()
                if not rows:
                    if self._sent:  # sent from memory: delete them
                        await hold_write_lock(session)
                        gone = self.take_sent()
                        try:
                            session.execute(self._sent_rows, {"ids": gone})
                            session.commit()
                        except BaseException:
                            self.return_sent(gone)
                            raise
                    return sent
                selected = {row[0] for row in rows}
                if self._ready:  # handed over, and read here: this drain sends them
                    self._ready = [c for c in self._ready if selected.isdisjoint(c.ids)]
                # every send is queued (aiokafka batches them per partition, in row
                # order), then the acks are awaited together before the rows are
                # deleted; each row keeps the trace context of the handler that emitted
                # it, and the whole drain is one producer span linked to them
                records = [
                    (topic, key, value, headers or {})
                    for id_, topic, key, value, headers in rows
                    if id_ not in self._sent  # sent from memory already
                ]
                if records:
                    await self._publish(records)
                await hold_write_lock(session)  # waited for off the loop (SQLite)
                gone = self.take_sent()
                try:
                    session.execute(self._sent_rows, {"ids": [*selected, *gone]})
                    session.commit()
                except BaseException:
                    self.return_sent([i for i in gone if i not in selected])
                    raise
                sent += len(records)
                if len(rows) < self.batch:
                    return sent

    async def _publish(self, records: list[Record]) -> None:
        if self.hot_broker is not None and any(is_ephemeral(r[0]) for r in records):
            hot = [r for r in records if is_ephemeral(r[0])]  # each broker keeps row order
            await _publish_on(self.broker, [r for r in records if not is_ephemeral(r[0])])
            await _publish_on(self.hot_broker, hot)
            return
        await _publish_on(self.broker, records)


async def _publish_on(broker: KafkaBroker, records: list[Record]) -> None:
    if not records:
        return
    publish_records = getattr(broker, "publish_records", None)
    if publish_records is not None:  # make_broker's: one span, no per-record command
        await publish_records(records)
        return
    await publish_each(broker.publish, records)
