"""ReplySink on a plain aiokafka producer, batching streamed chunks.

Chunks wait for one short window (an engine step's outputs arrive together) and go out as one
``InferenceChunks`` message per reply topic; an event sent to a topic first flushes that
topic's chunks, under one lock, so a request's chunks always precede its result. ``send`` only
appends to the producer's batch (linger 0); ``flush`` waits for everything at shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib

from aiokafka import AIOKafkaProducer

from shared.events import Event
from shared.events.serving import InferenceChunk
from shared.settings import kafka_client_options
from shared.wire import encode_chunks


class KafkaReplySink:
    def __init__(self, bootstrap: str, client_id: str, window_s: float = 0.001) -> None:
        self.bootstrap = bootstrap
        self.client_id = client_id
        self.window_s = window_s
        self._producer: AIOKafkaProducer | None = None
        self._pending: dict[str, list[InferenceChunk]] = {}
        self._flusher: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    @property
    def producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            raise RuntimeError("KafkaReplySink is not started")
        return self._producer

    async def start(self) -> None:
        self._producer = AIOKafkaProducer(  # needs the running loop: created here
            bootstrap_servers=self.bootstrap,
            client_id=self.client_id,
            acks="all",
            linger_ms=0,
            max_request_size=8 * 1024 * 1024,
            **kafka_client_options(),  # type: ignore[arg-type]
        )
        await self._producer.start()

    async def send(self, topic: str, event: Event | InferenceChunk, key: str) -> None:
        if isinstance(event, InferenceChunk):
            self._pending.setdefault(topic, []).append(event)
            if self._flusher is None:
                self._flusher = asyncio.create_task(self._flush_soon())
            return
        headers = [
            ("event_type", event.EVENT_TYPE.encode()),
            ("schema_version", str(event.SCHEMA_VERSION).encode()),
        ]
        async with self._lock:
            await self._send_chunks(topic)
            await self.producer.send(topic, event.to_bytes(), key=key.encode(), headers=headers)

    async def _flush_soon(self) -> None:
        await asyncio.sleep(self.window_s)
        self._flusher = None
        async with self._lock:
            for topic in list(self._pending):
                await self._send_chunks(topic)

    async def _send_chunks(self, topic: str) -> None:
        chunks = self._pending.pop(topic, None)
        if chunks:
            await self.producer.send(topic, encode_chunks(chunks))

    async def flush(self) -> None:
        async with self._lock:
            for topic in list(self._pending):
                await self._send_chunks(topic)
        await self.producer.flush()

    async def stop(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        await self.producer.stop()
