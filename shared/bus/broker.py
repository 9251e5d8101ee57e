"""The broker factory: the one place a KafkaBroker is configured."""

from __future__ import annotations

from faststream.kafka import KafkaBroker
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512

from shared.bus.instrument import MessagingTelemetry
from shared.settings import ServiceSettings


def make_broker(settings: ServiceSettings, client_id: str | None = None) -> KafkaBroker:
    """A broker with acks=all and the platform's messaging telemetry (spans, metrics and
    consumer lag on every subscriber and publish: ``shared.bus.instrument``).

    No idempotent producer and no transactions: they are not portable across the Kafka
    implementations we run on. Delivery is at-least-once and consumers are idempotent.
    """
    return KafkaBroker(
        settings.bootstrap_servers,
        client_id=client_id or settings.service_name,
        acks="all",
        enable_idempotence=False,
        max_request_size=8 * 1024 * 1024,
        request_timeout_ms=30_000,
        graceful_timeout=15.0,
        allow_auto_create_topics=False,
        middlewares=[MessagingTelemetry()],
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
