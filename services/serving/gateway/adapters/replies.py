"""The gateway's side of Kafka: its reply topic routed to waiting requests, and the worker
directory fed by heartbeats. One plain aiokafka consumer, no consumer group: every gateway
instance reads its own reply topic and every heartbeat. It fetches at the fast pace while a
request waits for replies and at the idle pace otherwise (``FetchPace``)."""

from __future__ import annotations

import asyncio
import logging
import time

from aiokafka import AIOKafkaConsumer, TopicPartition

from services.serving.gateway.workers import WorkerDirectory
from services.serving.wire import FetchPace
from shared.background import BackgroundLoop
from shared.bus.offsets import log_end_offsets
from shared.events import Event, EventDecodeError, decode
from shared.events.serving import InferenceCompleted, WorkerHeartbeat
from shared.settings import kafka_client_options
from shared.wire import Chunk, decode_chunks

log = logging.getLogger(__name__)
Reply = Event | Chunk
HEARTBEAT_REPLAY = 500  # last heartbeats read at start (a few seconds of a busy cluster)


class ReplyRouter:
    def __init__(
        self,
        bootstrap: str,
        reply_topic: str,
        heartbeat_topic: str,
        directory: WorkerDirectory,
        *,
        fetch_max_wait_ms: int = 10,
        idle_fetch_max_wait_ms: int = 25,
    ) -> None:
        self.bootstrap = bootstrap
        self.reply_topic = reply_topic
        self.heartbeat_topic = heartbeat_topic
        self.directory = directory
        self.fetch_max_wait_ms = fetch_max_wait_ms
        self.pace = FetchPace(fetch_max_wait_ms, idle_fetch_max_wait_ms)
        self.pending: dict[str, asyncio.Queue[Reply]] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._loop: BackgroundLoop | None = None

    def open(self, request_id: str) -> asyncio.Queue[Reply]:
        queue: asyncio.Queue[Reply] = asyncio.Queue()
        self.pending[request_id] = queue
        self.pace.busy()  # its first reply must not wait for an idle fetch's pace
        return queue

    def close(self, request_id: str) -> None:
        self.pending.pop(request_id, None)

    async def start(self) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=None,
            enable_auto_commit=False,
            fetch_max_wait_ms=self.fetch_max_wait_ms,
            max_partition_fetch_bytes=4 * 1024 * 1024,
            **kafka_client_options(),  # type: ignore[arg-type]
        )
        await consumer.start()
        parts = [TopicPartition(self.reply_topic, 0)]
        for _ in range(50):
            await consumer._client.force_metadata_update()
            beats = consumer.partitions_for_topic(self.heartbeat_topic)
            if beats and consumer.partitions_for_topic(self.reply_topic):
                parts += [TopicPartition(self.heartbeat_topic, p) for p in sorted(beats)]
                break
            await asyncio.sleep(0.1)
        # True ends (a Fetch's high watermark): ListOffsets, what seek_to_end and end_offsets
        # ask, answers too small on the embedded broker (docs/backbone.md), which would end
        # the heartbeat catch-up early (503s right after a start) and replay old replies.
        ends = await log_end_offsets(consumer, parts)  # assigns ``parts``
        consumer.seek(parts[0], ends[parts[0]])
        for tp in parts[1:]:  # replay recent heartbeats: workers known from the start
            consumer.seek(tp, max(0, ends[tp] - HEARTBEAT_REPLAY))
        for tp in parts:  # resolve now: nothing sent after start is missed
            await consumer.position(tp)
        self._consumer = consumer
        await self._catch_up({tp: ends[tp] for tp in parts[1:]})
        self.pace.attach(consumer)
        await self.start_loop()

    async def _catch_up(self, ends: dict[TopicPartition, int], timeout_s: float = 3.0) -> None:
        """Read the replayed heartbeats before serving: no 503 right after a start."""
        assert self._consumer is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            positions = [await self._consumer.position(tp) for tp in ends]
            if all(pos >= end for pos, end in zip(positions, ends.values(), strict=True)):
                return
            batch = await self._consumer.getmany(timeout_ms=100)
            for tp, records in batch.items():
                for record in records:
                    self._dispatch(tp.topic, record.value)

    def alive(self) -> bool:
        """The reply loop runs and its last read succeeded (``/healthz`` is red while it
        fails: no reply would arrive); a failing read is retried with backoff."""
        return self._loop is not None and self._loop.alive() and self._loop.failures == 0

    async def start_loop(self) -> None:
        """Route what the consumer reads, in the shared background loop."""
        self._loop = BackgroundLoop(
            "reply-router", self._step, interval_s=0.0, retry_s=0.1, max_retry_s=5.0
        )
        await self._loop.start()

    async def _step(self) -> bool:
        assert self._consumer is not None
        batch = await self._consumer.getmany(timeout_ms=1000)  # waits for data itself
        for tp, records in batch.items():
            for record in records:
                self._dispatch(tp.topic, record.value)
        self.pace.settle(active=bool(self.pending))
        return True  # read again at once

    def _dispatch(self, topic: str, value: bytes | None) -> None:
        """Route one record; a record that cannot be read is logged and skipped, never fatal
        (one bad frame must not cut every request of this gateway off its replies)."""
        try:
            self._route(topic, value or b"")
        except Exception as exc:
            log.warning(
                "unreadable reply skipped", extra={"topic": topic, "error": type(exc).__name__}
            )

    def _route(self, topic: str, value: bytes) -> None:
        chunks = decode_chunks(value)  # the hot path: one frame per engine step
        if chunks is not None:
            for chunk in chunks:
                queue = self.pending.get(chunk.request_id)
                if queue is not None:
                    queue.put_nowait(chunk)
            return
        try:
            event = decode(value)
        except EventDecodeError as exc:
            log.warning("undecodable reply", extra={"topic": topic, "reason": exc.reason})
            return
        if isinstance(event, WorkerHeartbeat):
            # judged by when it was sent, so the beats replayed at start count only if recent
            self.directory.observe(event, min(event.occurred_at.timestamp(), time.time()))
        elif isinstance(event, InferenceCompleted):
            queue = self.pending.get(event.request_id)
            if queue is not None:
                queue.put_nowait(event)

    async def stop(self) -> None:
        if self._loop is not None:
            await self._loop.stop()
        if self._consumer is not None:
            await self._consumer.stop()
