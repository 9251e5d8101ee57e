"""The Canceller port on the gateway's Kafka broker: a cancel frame on the cancel channel."""

from __future__ import annotations

from faststream.kafka import KafkaBroker

from services.serving.wire import CANCEL_TOPIC, cancel_frame


class KafkaCanceller:
    def __init__(self, broker: KafkaBroker) -> None:
        self.broker = broker

    async def cancel(self, request_id: str) -> None:
        await self.broker.publish(cancel_frame(request_id), topic=CANCEL_TOPIC)
