"""The EventBus: typed handlers with the platform's delivery rules.

For each message: decode (tolerant reader, upcasting) -> skip if this consumer group has
applied the event before (inbox) -> run the handler in a unit of work -> commit state,
inbox row and outbox rows together -> commit the Kafka offset.

Messages come in fetched batches: every event of a batch is applied in order (per-key order
holds) inside ONE database transaction with its inbox and outbox rows, and the offsets are
committed once for the batch, after its outbox rows were sent (on SQLite from memory:
``OutboxRelay.send``). If any handler of the batch fails, the transaction is rolled
back and the batch is applied again one event per transaction, with retries and the DLQ,
so a poison event costs only itself. A handler that keeps
failing, or bytes that are not a valid event, go to ``<topic>.dlq`` with the reason and
the original bytes and headers; the partition keeps flowing. On a raw hop (a topic whose
spec says ``raw_text``) the DLQ gets no raw bytes: they go to the transit store and the DLQ
record is a small JSON claim check to them (``dlq_claim``, header ``x-llmops-dlq-claim``),
which ``resolve_dlq_value`` reads back.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

from faststream.kafka import KafkaBroker
from faststream.middlewares import AckPolicy
from sqlalchemy import bindparam, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from shared.authority import Signer, Verifier, is_command
from shared.bus.instrument import consumer_span, dead_lettered, handled
from shared.bus.message import Message
from shared.bus.outbox import Committed, OutboxRelay
from shared.bus.store import (
    InboxEntry,
    OutboxEntry,
    UnitOfWork,
    delete_ids,
    event_key,
    insert_returning_ids,
    insert_rows,
)
from shared.events.envelope import ClaimCheck, Event
from shared.events.monitoring import AuditRecorded
from shared.events.registry import EventDecodeError, decode
from shared.storage.artifacts import ArtifactStore
from shared.storage.db import hold_write_lock
from shared.topics import Topic, is_ephemeral

log = logging.getLogger(__name__)

E = TypeVar("E", bound=Event)
Handler = Callable[[E, UnitOfWork], Awaitable[None]]

DLQ_HEADER_PREFIX = "x-llmops-dlq-"
DLQ_CLAIM_HEADER = f"{DLQ_HEADER_PREFIX}claim"  # "transit": the value is a claim check
DLQ_CLAIM_MEDIA_TYPE = "application/vnd.llmops.dlq-original"


def dlq_claim(value: bytes | None, headers: dict[str, str]) -> ClaimCheck | None:
    """The claim check a raw hop's DLQ record holds instead of its bytes (None: the record
    keeps its original bytes, as DLQs of the other topics do)."""
    if headers.get(DLQ_CLAIM_HEADER) != "transit":
        return None
    return ClaimCheck.model_validate(json.loads(value or b"{}")["dlq_claim"])


def resolve_dlq_value(
    value: bytes | None, headers: dict[str, str], transit: ArtifactStore
) -> bytes:
    """The original bytes of a DLQ record: read through its claim check from the transit
    store (size and sha256 checked), or the value itself when it holds no claim. Raises
    FileNotFoundError once the transit store's lifecycle has deleted the object."""
    claim = dlq_claim(value, headers)
    return (value or b"") if claim is None else transit.get_bytes(claim)


class EventBus:
    """Runtime of one service's messaging: subscriptions, outbox relay, DLQ, direct publish."""

    # FastStream's batch subscriber sleeps this long after an empty fetch: it bounds the
    # latency a batch subscriber adds at low load (and costs a wake-up per period when idle)
    BATCH_TIMEOUT_MS = 3

    def __init__(
        self,
        broker: KafkaBroker,
        engine: Engine | None,
        *,
        service: str,
        attempts: int = 4,
        backoff_s: float = 0.2,
        fetch_max_wait_ms: int = 25,
        session_timeout_ms: int = 6000,
        signer: Signer | None = None,
        verifier: Verifier | None = None,
        transit: ArtifactStore | None = None,
        hot_broker: KafkaBroker | None = None,
    ) -> None:
        self.broker = broker
        # the serving hops' broker (``shared.topics.is_ephemeral``: in memory on the
        # embedded stack) when it is not ``broker``; started and stopped with the bus
        self.hot_broker = hot_broker
        # where a raw hop's dead letters keep their bytes (None: LLMOPS_TRANSIT_URL, on use)
        self.transit = transit
        self.engine = engine
        self.service = service
        self.attempts = max(1, attempts)
        self.backoff_s = backoff_s
        self.fetch_max_wait_ms = fetch_max_wait_ms
        self.session_timeout_ms = session_timeout_ms
        self.signer = signer  # signs the commands this service issues
        self.verifier = verifier  # None: commands are not checked (LLMOPS_REQUIRE_AUTHORITY=0)
        self.relay = (
            OutboxRelay(broker, engine, hot_broker=hot_broker) if engine is not None else None
        )
        self.groups: dict[str, set[str]] = {}  # consumer group -> topics, for lag reports

    def broker_for(self, topic: str) -> KafkaBroker:
        """The broker that carries ``topic``: the serving hops' for an ephemeral topic (a
        DLQ twin is not one: dead letters stay on the main log), else the main one."""
        if self.hot_broker is not None and is_ephemeral(topic):
            return self.hot_broker
        return self.broker

    # -- subscribing -------------------------------------------------------------------
    def subscribe(
        self,
        topic: Topic,
        handler: Handler[Any],
        *,
        group: str | None = None,
        idempotent: bool = True,
        max_workers: int = 1,
        batch: int = 100,
        **subscriber_kwargs: Any,
    ) -> Any:
        """Subscribe ``handler(event, uow)`` to ``topic`` in a consumer group.

        ``batch``: most events applied per database transaction and offset commit (1: one
        transaction per event). Batching needs a database; ``max_workers > 1`` disables it.
        """
        # One consumer group per (service, topic): subscribers of one service never make
        # each other rebalance, and a group's lag reads as one handler's backlog.
        group_id = group or f"{self.service}.{topic.value.removeprefix('llmops.')}"
        self.groups.setdefault(group_id, set()).add(topic.value)
        if idempotent and self.engine is None:
            raise ValueError("an idempotent handler needs a database engine for its inbox")
        subscriber_kwargs.setdefault("auto_offset_reset", "earliest")
        subscriber_kwargs.setdefault("fetch_max_wait_ms", self.fetch_max_wait_ms)
        # A short session: a crashed or restarted member (the embedded broker ignores
        # LeaveGroup) is noticed in seconds, so its replacement gets the partitions quickly.
        # 6000 is the smallest Apache Kafka accepts by default (group.min.session.timeout.ms);
        # the embedded broker takes 3000 (ServiceSettings.session_timeout_ms).
        subscriber_kwargs.setdefault("session_timeout_ms", self.session_timeout_ms)
        subscriber_kwargs.setdefault(
            "heartbeat_interval_ms", max(100, self.session_timeout_ms // 6)
        )
        subscriber_kwargs.setdefault("rebalance_timeout_ms", 5000)
        if max_workers > 1:
            subscriber_kwargs["max_workers"] = max_workers
        if batch > 1 and max_workers == 1 and self.engine is not None:
            subscriber_kwargs.update(
                batch=True, max_records=batch, batch_timeout_ms=self.BATCH_TIMEOUT_MS
            )

        async def consume(message: Message) -> None:
            raw = message.raw_message
            records = list(raw) if isinstance(raw, tuple | list) else [raw]
            await self._consume_batch(topic, group_id, handler, records, idempotent=idempotent)

        consume.__name__ = getattr(handler, "__name__", "consume")
        return self.broker_for(topic.value).subscriber(
            topic.value,
            group_id=group_id,
            ack_policy=AckPolicy.NACK_ON_ERROR,
            **subscriber_kwargs,
        )(consume)

    async def _consume_batch(
        self,
        topic: Topic,
        group: str,
        handler: Handler[Any],
        records: list[Any],
        *,
        idempotent: bool,
    ) -> None:
        name = getattr(handler, "__name__", "?")
        decoded: list[tuple[Any, Event]] = []
        for record in records:
            try:
                decoded.append((record, decode(record.value, expected=topic.event)))
            except EventDecodeError as exc:
                await self._dead_letter_record(
                    topic, record, exc.reason, exc.detail, attempts=0, group=group
                )
                handled(topic.value, name, "dead-lettered").value += 1
        if self.verifier is not None and is_command(topic.event.EVENT_TYPE):
            decoded = [
                (record, event)
                for record, event in decoded
                if await self.admit(topic, record, once=not idempotent)
            ]
        if len(decoded) > 1 and self.engine is not None:
            try:
                applied = await self._apply_batch(topic, group, handler, decoded, idempotent)
            except Exception as exc:  # one event failed: redo them one per transaction
                log.warning(
                    "batch failed; applying its events one by one",
                    extra={
                        "topic": topic.value,
                        "handler": name,
                        "events": len(decoded),
                        "error": repr(exc),
                    },
                )
            else:
                handled(topic.value, name, "applied").value += applied
                if len(decoded) > applied:
                    handled(topic.value, name, "duplicate").value += len(decoded) - applied
                return
        for record, event in decoded:
            await self._consume_one(topic, group, handler, record, event, idempotent=idempotent)

    async def _apply_batch(
        self,
        topic: Topic,
        group: str,
        handler: Handler[Any],
        decoded: list[tuple[Any, Event]],
        idempotent: bool,
    ) -> int:
        """Apply every new event of the batch in one transaction; returns how many."""
        assert self.engine is not None
        applied = 0
        inbox: list[dict[str, Any]] = []
        outbox: list[dict[str, Any]] = []
        with Session(self.engine) as session:
            seen: set[str] = set()
            if idempotent:  # one query for the batch (no ORM entities to build)
                ids = [str(event.event_id) for _, event in decoded]
                seen = _seen_in_batch(session, group, ids)
            now = datetime.now(UTC)
            for record, event in decoded:
                event_id = str(event.event_id)
                if event_id in seen:
                    continue  # applied before, or twice in this batch
                seen.add(event_id)
                with consumer_span(topic.value, group, record):
                    await handler(
                        event,
                        UnitOfWork(
                            session, self.service, pending=outbox, signer=self.signer, now=now
                        ),
                    )
                if idempotent:
                    inbox.append(
                        {
                            "consumer": group,
                            "event_id": event_id,
                            "event_type": event.EVENT_TYPE,
                            "handled_at": now,
                        }
                    )
                applied += 1
            await hold_write_lock(session)  # waited for off the loop (SQLite)
            insert_rows(session, InboxEntry, inbox)
            relay = self.relay
            row_ids = None
            if relay is not None and relay.from_memory:  # its ids: the relay sends from memory
                row_ids = insert_returning_ids(session, OutboxEntry, outbox)
            if row_ids is None:
                insert_rows(session, OutboxEntry, outbox)  # in emission order: per-key order
            # rows the relay sent from memory since: deleted with this batch
            sent = relay.take_sent() if relay is not None and relay.from_memory else []
            try:
                if sent:
                    delete_ids(session, OutboxEntry, sent)
                session.commit()
            except BaseException:
                if relay is not None:
                    relay.return_sent(sent)
                raise
        if outbox and relay is not None:
            if row_ids is None:
                relay.kick()
            else:  # right after the commit (no await between): hand-overs keep commit order
                # sent now, before the batch's offsets are committed (the acks awaited, as
                # the batched aiokafka loop does); a failed send is left to the relay's drain
                await relay.send(
                    Committed(
                        row_ids, [(r["topic"], r["key"], r["value"], r["headers"]) for r in outbox]
                    )
                )
        return applied

    async def _consume_one(
        self,
        topic: Topic,
        group: str,
        handler: Handler[Any],
        record: Any,
        event: Event,
        *,
        idempotent: bool,
    ) -> None:
        name = getattr(handler, "__name__", "?")
        for attempt in range(1, self.attempts + 1):
            try:
                with consumer_span(topic.value, group, record):
                    applied = await self._apply(group, handler, event, idempotent=idempotent)
                outcome = "applied" if applied else "duplicate"
                break
            except Exception as exc:
                if attempt == self.attempts:
                    log.exception(
                        "handler failed; dead-lettering",
                        extra={"topic": topic.value, "handler": name},
                    )
                    await self._dead_letter_record(
                        topic,
                        record,
                        "handler-failed",
                        f"{type(exc).__name__}: {exc}",
                        attempts=attempt,
                        group=group,
                    )
                    outcome = "dead-lettered"
                    break
                log.warning(
                    "handler failed; retrying",
                    extra={
                        "topic": topic.value,
                        "handler": name,
                        "attempt": attempt,
                        "error": repr(exc),
                    },
                )
                await asyncio.sleep(self.backoff_s * 2 ** (attempt - 1))
        handled(topic.value, name, outcome).value += 1

    async def _apply(
        self, group: str, handler: Handler[Any], event: Event, *, idempotent: bool
    ) -> bool:
        if self.engine is None:
            await handler(event, UnitOfWork(_NoSession(), self.service, signer=self.signer))  # type: ignore[arg-type]
            return True
        with Session(self.engine) as session:
            if idempotent and self._seen_in(session, group, event):
                return False
            uow = UnitOfWork(session, self.service, signer=self.signer)
            await handler(event, uow)
            await hold_write_lock(session)  # waited for off the loop (SQLite)
            if idempotent:
                session.add(
                    InboxEntry(
                        consumer=group, event_id=str(event.event_id), event_type=event.EVENT_TYPE
                    )
                )
            try:
                session.commit()
            except IntegrityError:
                session.rollback()
                if idempotent and self._seen(group, event):
                    return False  # a concurrent delivery won the race
                raise
        if uow.emitted and self.relay is not None:
            self.relay.kick()
        return True

    def _seen(self, group: str, event: Event) -> bool:
        assert self.engine is not None
        with Session(self.engine) as session:
            return self._seen_in(session, group, event)

    @staticmethod
    def _seen_in(session: Session, group: str, event: Event) -> bool:
        entry: InboxEntry | None = session.get(InboxEntry, (group, str(event.event_id)))
        return entry is not None

    async def admit(self, topic: Topic, record: Any, *, once: bool = False) -> bool:
        """Whether a command record carries the authority its topic needs, still valid. If
        not, it goes to the DLQ with reason ``unauthorized`` and an
        ``AuditRecorded(allowed=False)`` is published; the caller must then apply nothing.
        ``once``: the caller is not idempotent (no inbox), so a replayed event id is refused
        too."""
        if self.verifier is None:
            return True
        principal, why = await self.verifier.check_async(record.value, once=once)
        if why is None:
            return True
        await self._dead_letter_record(topic, record, "unauthorized", why, attempts=0)
        handled(topic.value, "authority", "unauthorized").value += 1
        try:
            await self.publish(
                AuditRecorded(
                    action="command.rejected",
                    actor=principal[:200],
                    allowed=False,
                    target=topic.value,
                    details={
                        "reason": why[:500],
                        "partition": record.partition,
                        "offset": record.offset,
                        "consumer": self.service,
                    },
                )
            )
        except Exception:  # the DLQ row is the record of truth; never stall the partition
            log.exception("could not publish the audit of a rejected command")
        return False

    async def dead_letter(
        self, topic: Topic, message: Message, reason: str, detail: str, *, attempts: int
    ) -> None:
        """Send the original bytes and headers to ``<topic>.dlq`` with why."""
        raw = message.raw_message
        record = raw[0] if isinstance(raw, tuple) else raw
        await self._dead_letter_record(topic, record, reason, detail, attempts=attempts)

    async def _dead_letter_record(
        self,
        topic: Topic,
        record: Any,
        reason: str,
        detail: str,
        *,
        attempts: int,
        group: str | None = None,
    ) -> None:
        headers = {
            name: value.decode("utf-8", "backslashreplace") if isinstance(value, bytes) else value
            for name, value in (record.headers or ())
        }
        headers.update(
            {
                f"{DLQ_HEADER_PREFIX}reason": reason,
                f"{DLQ_HEADER_PREFIX}error": detail[:4000],
                f"{DLQ_HEADER_PREFIX}topic": topic.value,
                f"{DLQ_HEADER_PREFIX}partition": str(record.partition),
                f"{DLQ_HEADER_PREFIX}offset": str(record.offset),
                f"{DLQ_HEADER_PREFIX}consumer": self.service,
                f"{DLQ_HEADER_PREFIX}attempts": str(attempts),
            }
        )
        log.error(
            "dead-lettered message",
            extra={
                "topic": topic.value,
                "reason": reason,
                "offset": record.offset,
                "error": detail[:500],
            },
        )
        value = record.value or b""
        if topic.spec.raw_text:  # raw text never sits in a DLQ: a claim check to transit
            value = await asyncio.to_thread(self._claim_dead_letter, value, headers)
        await self.broker.publish(value, topic.dlq, key=record.key, headers=headers)
        dead_lettered(topic.value, group, reason)

    def _claim_dead_letter(self, value: bytes, headers: dict[str, str]) -> bytes:
        """Put a raw hop's dead-lettered bytes in the transit store (deleted by its
        lifecycle); return the DLQ record's body: a claim check. If the store cannot take
        them, the bytes are dropped (the body keeps their sha256 and size): a DLQ never
        holds raw text."""
        try:
            if self.transit is None:
                from shared.settings import ServiceSettings

                self.transit = ArtifactStore(ServiceSettings().transit_root)
            claim = self.transit.put_bytes(value, DLQ_CLAIM_MEDIA_TYPE)
        except Exception as exc:
            log.exception("could not keep a dead letter in the transit store; bytes dropped")
            headers[DLQ_CLAIM_HEADER] = "dropped"
            headers[f"{DLQ_HEADER_PREFIX}claim-error"] = f"{type(exc).__name__}"[:200]
            return json.dumps(
                {"sha256": hashlib.sha256(value).hexdigest(), "size": len(value)}
            ).encode()
        headers[DLQ_CLAIM_HEADER] = "transit"
        return json.dumps({"dlq_claim": claim.model_dump(mode="json")}).encode()

    # -- producing ---------------------------------------------------------------------
    async def publish(
        self, event: Event, *, key: str | None = None, topic: Topic | None = None
    ) -> Event:
        """Publish directly (no outbox): for stateless producers such as the gateway."""
        if event.producer == "unknown":
            event = event.model_copy(update={"producer": self.service})
        if self.signer is not None:
            event = self.signer.sign_command(event)
        target = topic or Topic.for_event(event)
        key = key if key is not None else event_key(event, target)
        await self.broker_for(target.value).publish(
            event.to_bytes(),
            target.value,
            key=key.encode() if key else None,
            headers={"event_type": event.EVENT_TYPE, "schema_version": str(event.SCHEMA_VERSION)},
        )
        return event

    @contextmanager
    def unit_of_work(self) -> Any:
        """State change + emitted events outside a handler (e.g. from an HTTP route)."""
        if self.engine is None:
            raise RuntimeError("this bus has no database")
        with Session(self.engine) as session:
            uow = UnitOfWork(session, self.service, signer=self.signer)
            yield uow
            session.commit()
        if uow.emitted and self.relay is not None:
            self.relay.kick()

    async def start(self) -> None:
        if self.hot_broker is not None:  # the main broker is started by its app
            await self.hot_broker.start()
        if self.relay is not None:
            await self.relay.start()
            self.relay.kick()  # rows left by a previous run go out first

    async def stop(self) -> None:
        if self.relay is not None:
            await self.relay.stop()
        if self.hot_broker is not None:
            await self.hot_broker.stop()


_INBOX = InboxEntry.__table__  # type: ignore[attr-defined]
# the event ids of a batch its consumer group applied before (built once: no statement, and
# no cache key, per batch)
_SEEN_IN_BATCH = select(_INBOX.c.event_id).where(
    _INBOX.c.consumer == bindparam("consumer"),
    _INBOX.c.event_id.in_(bindparam("ids", expanding=True)),
)


def _seen_in_batch(session: Session, group: str, ids: list[str]) -> set[str]:
    """The ids of ``ids`` that ``group`` applied before: plain SQL on SQLite (up to 500 ids
    a statement; no expanding ``IN`` rendered per batch), the prebuilt Core query elsewhere."""
    connection = session.connection()
    if connection.dialect.name != "sqlite" or connection.dialect.paramstyle != "qmark":
        return set(connection.execute(_SEEN_IN_BATCH, {"consumer": group, "ids": ids}).scalars())
    seen: set[str] = set()
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        sql = (
            f"SELECT event_id FROM {_INBOX.name} WHERE consumer = ? "
            f"AND event_id IN ({', '.join('?' * len(chunk))})"
        )
        seen.update(row[0] for row in connection.exec_driver_sql(sql, (group, *chunk)))
    return seen


class _NoSession:
    def add(self, _obj: object) -> None:
        raise RuntimeError("this bus has no database: publish directly with bus.publish()")
