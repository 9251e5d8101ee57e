"""The broker factory: the one place a KafkaBroker is configured."""

from __future__ import annotations

from typing import Any

from faststream.kafka import KafkaBroker
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512

from shared.bus.instrument import instrument_subscriber, traced_send
from shared.settings import ServiceSettings


class TracedKafkaBroker(KafkaBroker):
    """A KafkaBroker whose subscribers and publishes carry the platform's messaging
    telemetry (``shared.bus.instrument``) without a FastStream middleware: each subscriber's
    handlers are wrapped when it is made (``broker.subscriber(...)``, the EventBus' too), and
    ``publish``/``publish_batch`` go through ``traced_send``. A middleware would cost an
    object, an async context and a ``partial`` per message and per publish on top of the
    telemetry itself. Not instrumented (the platform uses none of them): publishers made
    with ``broker.publisher(...)``, a handler's return value published to ``reply_to``, and
    subscribers of a ``KafkaRouter``."""

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
        return await traced_send(
            topic, 1, headers, super().publish(message, topic, headers=headers, **kwargs)
        )

    async def publish_batch(  # type: ignore[override]
        self,
        *messages: Any,
        topic: str = "",
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> Any:
        headers = {} if headers is None else headers
        return await traced_send(
            topic,
            len(messages),
            headers,
            super().publish_batch(*messages, topic=topic, headers=headers, **kwargs),
        )


def make_broker(settings: ServiceSettings, client_id: str | None = None) -> KafkaBroker:
    """A broker with acks=all and the platform's messaging telemetry (spans, metrics and
    consumer lag on every subscriber and publish: ``TracedKafkaBroker``).

    No idempotent producer and no transactions: they are not portable across the Kafka
    implementations we run on. Delivery is at-least-once and consumers are idempotent.
    """
    return TracedKafkaBroker(
        settings.bootstrap_servers,
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
