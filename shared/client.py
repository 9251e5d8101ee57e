"""The typed Python SDK for engineers: publish events, read and wait for them.

async with PlatformClient(ServiceSettings()) as client:
    request = await client.publish(IngestRequested(dataset="tickets", sources=[...]))
    report = await client.wait_for(Topic.INGEST_COMPLETED,
                                   lambda e: e.request_id == request.event_id)
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any, Self

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from opentelemetry import propagate, trace

from shared.authority import Signer, signer_for
from shared.events import Event, EventDecodeError, decode
from shared.settings import ServiceSettings
from shared.topics import Topic, bootstrap_for

_tracer = trace.get_tracer("llmops.client")


class PlatformClient:
    def __init__(
        self, settings: ServiceSettings, producer_name: str = "cli", signer: Signer | None = None
    ) -> None:
        self.settings = settings
        self.producer_name = producer_name
        # commands are signed with the caller's credential: the user's own key
        # (LLMOPS_CREDENTIALS, from `llmops keys create`), else the admin key's signing key
        self.signer = signer or signer_for(settings, user=True)
        self._producer: AIOKafkaProducer | None = None
        # bootstrap -> producer: the serving hops' broker gets its own on first use
        self._producers: dict[str, AIOKafkaProducer] = {}

    def _new_producer(self, bootstrap: str) -> AIOKafkaProducer:
        return AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            acks="all",
            max_request_size=8 * 1024 * 1024,
            request_timeout_ms=15_000,
            **self.settings.kafka_client_options(),  # type: ignore[arg-type]
        )

    async def __aenter__(self) -> Self:
        self._producer = self._new_producer(self.settings.bootstrap_servers)
        await self._producer.start()
        self._producers = {self.settings.bootstrap_servers: self._producer}
        return self

    async def __aexit__(self, *exc: object) -> None:
        for producer in self._producers.values():
            await producer.stop()
        self._producers = {}

    async def _producer_for(self, topic: str) -> AIOKafkaProducer:
        """The producer of the broker that carries ``topic`` (``bootstrap_for``)."""
        bootstrap = bootstrap_for(topic, self.settings)
        producer = self._producers.get(bootstrap)
        if producer is None:
            producer = self._new_producer(bootstrap)
            await producer.start()
            self._producers[bootstrap] = producer
        return producer

    async def publish(
        self, event: Event, *, topic: Topic | None = None, key: str | None = None
    ) -> Event:
        """Validate-by-construction, then send with acks=all; returns the event sent."""
        assert self._producer is not None, "use `async with PlatformClient(...)`"
        if event.producer == "unknown":
            event = event.model_copy(update={"producer": self.producer_name})
        if self.signer is not None:
            event = self.signer.sign_command(event)
        target = topic or Topic.for_event(event)
        if key is None:
            value = getattr(event, target.spec.key, None)
            key = None if value is None else str(value)
        with _tracer.start_as_current_span(f"{target.value} publish", kind=trace.SpanKind.PRODUCER):
            carrier: dict[str, str] = {}
            propagate.inject(carrier)
            headers = [(k, v.encode()) for k, v in carrier.items()]
            headers += [
                ("event_type", event.EVENT_TYPE.encode()),
                ("schema_version", str(event.SCHEMA_VERSION).encode()),
            ]
            producer = await self._producer_for(target.value)
            await producer.send_and_wait(
                target.value, event.to_bytes(), key=key.encode() if key else None, headers=headers
            )
        return event

    async def stream(
        self,
        topic: Topic | str,
        *,
        from_beginning: bool = False,
        timeout_s: float | None = None,
        raw: bool = False,
    ) -> AsyncIterator[Any]:
        """Yield decoded events (or raw records) of a topic until ``timeout_s`` of silence."""
        name = topic.value if isinstance(topic, Topic) else topic
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap_for(name, self.settings),
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest" if from_beginning else "latest",
            fetch_max_wait_ms=self.settings.fetch_max_wait_ms,
            **self.settings.kafka_client_options(),  # type: ignore[arg-type]
        )
        await consumer.start()
        try:
            partitions = consumer.partitions_for_topic(name) or set()
            if not partitions:
                await consumer._client.force_metadata_update()
                partitions = consumer.partitions_for_topic(name) or set()
            assigned = [TopicPartition(name, p) for p in sorted(partitions)]
            consumer.assign(assigned)
            if from_beginning:
                await consumer.seek_to_beginning(*assigned)
            else:
                await consumer.seek_to_end(*assigned)
                for tp in assigned:  # resolve positions now, so nothing sent later is missed
                    await consumer.position(tp)
            loop = asyncio.get_running_loop()
            last = loop.time()
            while True:
                batch = await consumer.getmany(timeout_ms=200)
                got = False
                for records in batch.values():
                    for record in records:
                        got = True
                        if raw:
                            yield record
                            continue
                        expected = Topic(name).event if name in Topic._value2member_map_ else None
                        try:
                            yield decode(record.value, expected=expected)
                        except EventDecodeError:
                            continue
                if got:
                    last = loop.time()
                elif timeout_s is not None and loop.time() - last > timeout_s:
                    return
        finally:
            await consumer.stop()

    async def wait_for(
        self,
        topic: Topic,
        predicate: Callable[[Any], bool],
        *,
        timeout_s: float = 60.0,
        from_beginning: bool = True,
    ) -> Any:
        """The first event on ``topic`` matching ``predicate``; TimeoutError after timeout_s."""

        async def first() -> Any:
            async for event in self.stream(topic, from_beginning=from_beginning):
                if predicate(event):
                    return event
            return None

        return await asyncio.wait_for(first(), timeout=timeout_s)


def event_to_json_line(event: Event) -> str:
    return json.dumps(event.model_dump(mode="json"), separators=(",", ":"))
