"""The broker factory: the one place a KafkaBroker is configured."""

from __future__ import annotations

import asyncio
import functools
import inspect
import random
from collections.abc import Callable, Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from faststream._internal.parser import DefaultCodec
from faststream.kafka import KafkaBroker
from faststream.kafka.publisher.state import RealProducer
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512

from shared.bus.instrument import instrument_subscriber, traced_send, traced_send_records
from shared.settings import ServiceSettings

# the options of ``publish`` that ``TracedKafkaBroker._send_bytes`` handles itself, and of
# ``publish_batch`` that ``_send_batch`` does
_DIRECT_OPTIONS = frozenset({"key", "partition", "timestamp_ms", "correlation_id", "no_confirm"})
_BATCH_DIRECT_OPTIONS = _DIRECT_OPTIONS - {"key"}


class TracedKafkaBroker(KafkaBroker):
    """A KafkaBroker whose subscribers and publishes carry the platform's messaging
    telemetry (``shared.bus.instrument``) without a FastStream middleware: each subscriber's
    handlers are wrapped when it is made (``broker.subscriber(...)``, the EventBus' too), and
    ``publish``/``publish_batch`` go through ``traced_send``. A ``publish`` of bytes with
    plain options goes to the aiokafka producer directly (``_send_bytes``: the record
    FastStream would send, without its publish command, codec and middleware chain), a
    ``publish_batch`` of bytes too (``_send_batch``: the batch handler's way to publish its
    follow-ups, one span and one correlation id for the call), and
    ``publish_records`` sends encoded records (the outbox relay's) as one traced batch. A
    middleware would cost an object, an async context and a ``partial`` per message and
    per publish on top of the telemetry itself. Not instrumented (the platform uses none of
    them): publishers made with ``broker.publisher(...)``, a handler's return value
    published to ``reply_to``, and subscribers of a ``KafkaRouter``."""

    def subscriber(self, *topics: Any, **kwargs: Any) -> Any:
        return instrument_subscriber(super().subscriber(*topics, **kwargs))

    async def publish(  # type: ignore[override]
        self,
        message: Any,
        topic: str = "",
        *,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> Any:
        headers = {} if headers is None else headers
        producer = self._direct_producer(message, kwargs)
        if producer is not None:
            send = self._send_bytes(producer, message, topic, headers, **kwargs)
        else:
            send = super().publish(message, topic, headers=headers, **kwargs)
        return await traced_send(topic, 1, headers, send)

    def _direct_producer(
        self, message: Any, kwargs: dict[str, Any], options: frozenset[str] = _DIRECT_OPTIONS
    ) -> AIOKafkaProducer | None:
        """The aiokafka producer when a publish can skip FastStream's command, codec and
        middleware chain with the same record as result: bytes, nothing but the ``options``
        the direct send handles, no broker middlewares, FastStream's default codec."""
        if type(message) is not bytes or not options.issuperset(kwargs):
            return None
        key = kwargs.get("key")
        if key is not None and type(key) is not bytes:
            return None
        if (
            self.middlewares
            or type(getattr(self.config.producer, "codec", None)) is not DefaultCodec
        ):
            return None
        return self._aiokafka_producer()

    async def _send_bytes(
        self,
        producer: AIOKafkaProducer,
        message: bytes,
        topic: str,
        headers: dict[str, str],
        *,
        key: bytes | None = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
        correlation_id: str | None = None,
        no_confirm: bool = False,
    ) -> Any:
        """What FastStream's ``publish`` sends for bytes: its ``content-type`` (empty for
        bytes) and ``correlation_id`` headers, then the caller's (read when this runs:
        ``traced_send`` adds the trace context first)."""
        sent = {
            "content-type": "",
            "correlation_id": correlation_id or self.config.id_generator(),
            **headers,
        }
        future = await producer.send(
            topic,
            message,
            key=key,
            partition=partition,
            timestamp_ms=timestamp_ms,
            headers=[(name, (text or "").encode()) for name, text in sent.items()],
        )
        return future if no_confirm else await future

    async def publish_batch(  # type: ignore[override]
        self,
        *messages: Any,
        topic: str = "",
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> Any:
        headers = {} if headers is None else headers
        producer = None
        if messages and all(type(m) is bytes for m in messages):
            producer = self._direct_producer(b"", kwargs, _BATCH_DIRECT_OPTIONS)
        if producer is not None:
            send = self._send_batch(producer, messages, topic, headers, **kwargs)
        else:
            send = super().publish_batch(*messages, topic=topic, headers=headers, **kwargs)
        return await traced_send(topic, len(messages), headers, send)

    async def _send_batch(
        self,
        producer: AIOKafkaProducer,
        messages: Sequence[bytes],
        topic: str,
        headers: dict[str, str],
        *,
        partition: int | None = None,
        timestamp_ms: int | None = None,
        correlation_id: str | None = None,
        no_confirm: bool = False,
    ) -> Any:
        """What FastStream's ``publish_batch`` sends for bytes (its ``correlation_id``
        header, one for the call, then the caller's; one partition for every message, in
        order), each message queued on the aiokafka producer: no publish command, codec
        call or header dict per message, and no limit of one producer batch (FastStream
        builds ONE record batch of the producer's ``max_batch_size``, 16 kB by default,
        and raises beyond it). Returns the last message's metadata (a future of it with
        ``no_confirm``), every message acknowledged."""
        sent = {"correlation_id": correlation_id or self.config.id_generator(), **headers}
        encoded = [(name, (text or "").encode()) for name, text in sent.items()]
        if partition is None:  # FastStream's batch goes to one partition the partitioner picks
            partition = random.choice(sorted(await producer.partitions_for(topic)))
        futures = [
            await producer.send(
                topic, value, partition=partition, timestamp_ms=timestamp_ms, headers=encoded
            )
            for value in messages
        ]
        done = asyncio.ensure_future(_last_of(futures))
        return done if no_confirm else await done

    async def publish_records(
        self, records: Sequence[tuple[str, str | None, bytes, dict[str, str]]]
    ) -> None:
        """Publish encoded records, ``(topic, key, value, headers)``, in order, and wait
        until every one is acknowledged (the outbox relay's path). Each send is queued on
        the aiokafka producer at once (it batches them per partition, in order) and the
        acks are awaited together: no FastStream publish command, codec or correlation id
        per record, and ONE producer span for the call (``traced_send_records``). The
        headers go out as given (no ``content-type`` or ``correlation_id`` added). Off a
        real connection (``TestKafkaBroker``), each record goes through FastStream's
        publish, untraced, with the same headers."""
        if not records:
            return
        await traced_send_records(records, self._send_records(records))

    async def _send_records(
        self, records: Sequence[tuple[str, str | None, bytes, dict[str, str]]]
    ) -> None:
        producer = self._aiokafka_producer()
        if producer is None:
            await publish_each(functools.partial(KafkaBroker.publish, self), records)
            return
        futures = [
            await producer.send(
                topic,
                value,
                key=key.encode() if key else None,
                headers=[(name, text.encode()) for name, text in headers.items()],
            )
            for topic, key, value, headers in records
        ]
        await asyncio.gather(*futures)

    def _aiokafka_producer(self) -> AIOKafkaProducer | None:
        """The connected aiokafka producer under FastStream's, or None (not connected, or
        a test client's fake producer)."""
        state = getattr(self.config.producer, "_producer", None)
        if not isinstance(state, RealProducer):
            return None
        producer = state.producer
        return producer if isinstance(producer, AIOKafkaProducer) else None


def make_broker(
    settings: ServiceSettings, client_id: str | None = None, *, bootstrap: str | None = None
) -> KafkaBroker:
    """A broker with acks=all and the platform's messaging telemetry (spans, metrics and
    consumer lag on every subscriber and publish: ``TracedKafkaBroker``), on ``bootstrap``
    (default: the main log's, ``settings.bootstrap_servers``).

    No idempotent producer and no transactions: they are not portable across the Kafka
    implementations we run on. Delivery is at-least-once and consumers are idempotent.
    """
    return TracedKafkaBroker(
        bootstrap or settings.bootstrap_servers,
        client_id=client_id or settings.service_name,
        acks="all",
        enable_idempotence=False,
        max_request_size=8 * 1024 * 1024,
        request_timeout_ms=30_000,
        graceful_timeout=15.0,
        allow_auto_create_topics=False,
        logger=None,
        security=kafka_security(settings),
    )


async def _last_of(futures: list[Any]) -> Any:
    """Every future's result awaited; the last one's returned."""
    return (await asyncio.gather(*futures))[-1]


def kafka_security(settings: ServiceSettings) -> BaseSecurity | None:
    """SASL credentials for the production cluster (compose/); None on the embedded broker."""
    if not settings.kafka_security_protocol.startswith("SASL"):
        return None
    kinds = {"PLAIN": SASLPlaintext, "SCRAM-SHA-256": SASLScram256, "SCRAM-SHA-512": SASLScram512}
    kind = kinds.get(settings.kafka_sasl_mechanism.upper())
    if kind is None:
        raise ValueError(f"unsupported SASL mechanism {settings.kafka_sasl_mechanism!r}")
    return kind(
        settings.kafka_username or "",
        settings.kafka_password or "",
        use_ssl=settings.kafka_security_protocol == "SASL_SSL",
    )


async def publish_each(
    publish: Callable[..., Any],
    records: Sequence[tuple[str, str | None, bytes, dict[str, str]]],
) -> None:
    """Publish records one by one through a FastStream ``publish`` (no confirmation each),
    then wait for them together: the path of brokers without a raw aiokafka producer."""
    pending = [
        await publish(
            value,
            topic,
            key=key.encode() if key else None,
            headers=dict(headers),
            no_confirm=True,
        )
        for topic, key, value, headers in records
    ]
    await asyncio.gather(*(p for p in pending if inspect.isawaitable(p)))
