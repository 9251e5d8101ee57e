"""ReplySink on a plain aiokafka producer that runs on a thread and event loop of its own.

The engine's event loop (vLLM's AsyncLLM output handling, the generation tasks) only appends
to a queue: ``send`` never waits for Kafka. The I/O thread drains what has queued up since it
last ran and writes it in order: the chunks of one drain go out as one ``InferenceChunks``
frame per reply topic (one engine step's deltas for every request of a gateway: one record,
not one per token and request); an event first flushes the chunks queued before it for its
topic, so a request's chunks always precede its result. Everything the engine produced while
the producer was busy coalesces into the next drain: at low load each step goes out at once,
at high load frames grow instead of records multiplying.

``interval_s`` paces the drains of plain chunks (vLLM's server has ``--stream-interval`` for
the same reason): a drain waits that long after the previous one, so a lone stream's steps of
1-2 ms share a frame instead of costing a Kafka record each. A request's first chunk and any
event (a result, a heartbeat) cut the wait short: time to first token and the end of a
stream never wait for the pace.

Replies and heartbeats are serving hops (``shared.topics.is_ephemeral``); a result's copy on
``inference.completed`` is not. When they live on different brokers (``ephemeral_bootstrap``:
the embedded stack's in-memory broker beside its durable log), the sink holds a producer
for each and sends every record to its topic's. The durable log's records then go out from a
task of their own, lingering ``log_linger_s`` to share a write (each write is an object in the
log's store): a batch full behind a slow write holds up only that task, never the replies.
A linger's records all go to one partition of their topic (the next linger's to the next
one), as Kafka's sticky partitioner places records without a key: a result's key (its
request id) is unique, so it orders nothing, and records spread over every partition made
each linger one object per partition in the store instead of one.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
import zlib
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from aiokafka import AIOKafkaProducer

from shared.events import Event
from shared.runtime import fast_loop_factory
from shared.settings import kafka_client_options
from shared.topics import is_ephemeral
from shared.wire import Chunk, coalesce, encode_chunks

log = logging.getLogger(__name__)

# (topic, value, key, headers): one Kafka record
Record = tuple[str, bytes, bytes | None, list[tuple[str, bytes]] | None]
_Item = tuple[str, Event | Chunk | concurrent.futures.Future[None], str]


def records(items: Iterable[tuple[str, Event | Chunk, str]]) -> list[Record]:
    """The Kafka records for queued items, in order: consecutive chunks of a topic share one
    frame, with one chunk per request and choice (``coalesce``: the steps of one drain
    joined); an event flushes its topic's chunks before itself."""
    out: list[Record] = []
    pending: dict[str, list[Chunk]] = {}
    for topic, item, key in items:
        if isinstance(item, Chunk):
            pending.setdefault(topic, []).append(item)
            continue
        chunks = pending.pop(topic, None)
        if chunks:
            out.append((topic, encode_chunks(coalesce(chunks)), None, None))
        headers = [
            ("event_type", item.EVENT_TYPE.encode()),
            ("schema_version", str(item.SCHEMA_VERSION).encode()),
        ]
        out.append((topic, item.to_bytes(), key.encode(), headers))
    out.extend(
        (topic, encode_chunks(coalesce(chunks)), None, None) for topic, chunks in pending.items()
    )
    return out


class KafkaReplySink:
    def __init__(
        self,
        bootstrap: str,
        client_id: str,
        *,
        producer_factory: Callable[[], Any] | None = None,
        interval_s: float = 0.0,
        ephemeral_bootstrap: str | None = None,
        log_linger_s: float = 0.0,
    ) -> None:
        self.bootstrap = bootstrap
        # the serving hops' broker, when it is not ``bootstrap``
        self.ephemeral_bootstrap = (
            ephemeral_bootstrap if ephemeral_bootstrap not in (None, bootstrap) else None
        )
        self.client_id = client_id
        self.interval_s = interval_s
        self.log_linger_s = log_linger_s if self.ephemeral_bootstrap is not None else 0.0
        self._factory = producer_factory
        self._queue: deque[_Item] = deque()
        self._scheduled = False  # a wake-up of the writer is on its way
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._wake: asyncio.Event | None = None
        self._urgent: asyncio.Event | None = None
        self._drained = 0.0  # when the writer last drained the queue (its loop's clock)
        self._writer: asyncio.Task[None] | None = None
        self._producer_obj: Any = None  # the main log's producer
        self._hot_producer: Any = None  # the serving hops' (None: the main one carries them)
        self._log_records: asyncio.Queue[Record] | None = None  # for the main log, beside hops
        self._log_writer: asyncio.Task[None] | None = None
        # where this sink's sticky partitions start: workers' lingers spread over partitions
        self._partition_offset = zlib.crc32(client_id.encode())

    def _producer(self, bootstrap: str, linger_s: float = 0.0) -> AIOKafkaProducer:
        return AIOKafkaProducer(  # needs the running loop: created on the I/O thread
            bootstrap_servers=bootstrap,
            client_id=self.client_id,
            acks="all",
            # 0: one request in flight per broker, later records batch behind it
            linger_ms=int(linger_s * 1000),
            max_request_size=8 * 1024 * 1024,
            max_batch_size=1024 * 1024 if linger_s else 16384,  # a lingered batch is not cut
            **kafka_client_options(),  # type: ignore[arg-type]
        )

    # -- the engine's side -----------------------------------------------------------------
    async def start(self) -> None:
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(
            target=self._run, args=(ready,), name="reply-sink", daemon=True
        )
        self._thread.start()
        await asyncio.wrap_future(ready)

    async def send(self, topic: str, event: Event | Chunk, key: str) -> None:
        """Queue a chunk or an event for ``topic``; returns at once (written in order)."""
        self._put((topic, event, key))

    async def flush(self) -> None:
        """Wait until everything sent so far has been written and acknowledged."""
        done: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._put(("", done, ""))
        await asyncio.wrap_future(done)

    async def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        stopped = asyncio.run_coroutine_threadsafe(self._close(), self._loop)
        await asyncio.wrap_future(stopped)
        self._loop.call_soon_threadsafe(self._loop.stop)
        await asyncio.to_thread(self._thread.join, 10)
        self._loop = self._thread = None

    def _put(self, item: _Item) -> None:
        loop = self._loop
        if loop is None:
            raise RuntimeError("KafkaReplySink is not started")
        self._queue.append(item)
        urgent = not isinstance(item[1], Chunk) or item[1].seq == 0
        if urgent and self.interval_s > 0:
            loop.call_soon_threadsafe(self._hurry)
        if not self._scheduled:  # the writer resets the flag before it drains: none is lost
            self._scheduled = True
            loop.call_soon_threadsafe(self._wake_writer)

    # -- the I/O thread --------------------------------------------------------------------
    def _run(self, ready: concurrent.futures.Future[None]) -> None:
        factory = fast_loop_factory()  # uvloop when installed: it wakes per engine step
        loop = factory() if factory is not None else asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._open())
        except BaseException as exc:
            ready.set_exception(exc)
            loop.close()
            return
        self._loop = loop
        ready.set_result(None)
        try:
            loop.run_forever()
        finally:
            loop.close()

    async def _open(self) -> None:
        self._wake = asyncio.Event()
        self._urgent = asyncio.Event()
        main, linger = self.bootstrap, self.log_linger_s
        self._producer_obj = self._factory() if self._factory else self._producer(main, linger)
        await self._producer_obj.start()
        loop = asyncio.get_running_loop()
        if self.ephemeral_bootstrap is not None:
            hot = self.ephemeral_bootstrap
            self._hot_producer = self._factory() if self._factory else self._producer(hot)
            await self._hot_producer.start()
            self._log_records = asyncio.Queue()
            self._log_writer = loop.create_task(self._write_log(self._log_records))
        self._writer = loop.create_task(self._write_loop())

    def _wake_writer(self) -> None:
        assert self._wake is not None
        self._wake.set()

    def _hurry(self) -> None:
        assert self._urgent is not None
        self._urgent.set()

    async def _pace(self) -> None:
        """Wait ``interval_s`` since the last drain, unless something urgent is queued."""
        assert self._urgent is not None
        wait = self._drained + self.interval_s - asyncio.get_running_loop().time()
        if wait <= 0 or self._urgent.is_set():
            return
        try:
            async with asyncio.timeout(wait):
                await self._urgent.wait()
        except TimeoutError:
            pass

    async def _write_loop(self) -> None:
        assert self._wake is not None
        assert self._urgent is not None
        while True:
            await self._wake.wait()
            await self._pace()
            self._wake.clear()
            self._urgent.clear()
            self._scheduled = False
            self._drained = asyncio.get_running_loop().time()
            items = [self._queue.popleft() for _ in range(len(self._queue))]
            try:
                await self._drain(items)
            except Exception:  # the writer must outlive one bad drain, or replies stall
                log.exception("replies not written", extra={"items": len(items)})

    async def _drain(self, items: list[_Item]) -> None:
        batch: list[tuple[str, Event | Chunk, str]] = []
        for topic, item, key in items:
            if isinstance(item, concurrent.futures.Future):  # a flush marker
                await self._write(records(batch))
                batch = []
                await self._settle(item)
            else:
                batch.append((topic, item, key))
        await self._write(records(batch))

    def _producers(self) -> list[Any]:
        return [p for p in (self._producer_obj, self._hot_producer) if p is not None]

    def _producer_for(self, topic: str) -> Any:
        if self._hot_producer is not None and is_ephemeral(topic):
            return self._hot_producer
        return self._producer_obj

    async def _write(self, out: list[Record]) -> None:
        for record in out:
            producer = self._producer_for(record[0])
            if self._log_records is not None and producer is self._producer_obj:
                self._log_records.put_nowait(record)  # the main log's: its own task sends it
            else:
                await self._send(producer, record)

    async def _send(self, producer: Any, record: Record, partition: int | None = None) -> None:
        topic, value, key, headers = record
        try:  # appends to the producer's batch (waits only while that batch is full)
            await producer.send(topic, value, key=key, headers=headers, partition=partition)
        except Exception:  # one record the broker refuses must not stop the others
            log.exception("reply not written", extra={"topic": topic})

    async def _write_log(self, queue: asyncio.Queue[Record]) -> None:
        while True:
            record = await queue.get()
            try:
                partition = await self._sticky_partition(record[0])
                await self._send(self._producer_obj, record, partition)
            finally:
                queue.task_done()

    async def _sticky_partition(self, topic: str) -> int | None:
        """The partition this linger's records of ``topic`` share (None: by key, as without
        a linger, or while the topic's partitions are unknown)."""
        if self.log_linger_s <= 0:
            return None
        try:
            partitions = sorted(await self._producer_obj.partitions_for(topic))
        except Exception:  # no metadata yet: the send reports it, by key
            return None
        if not partitions:
            return None
        window = int(asyncio.get_running_loop().time() / self.log_linger_s)
        return partitions[(window + self._partition_offset) % len(partitions)]

    async def _settle(self, marker: concurrent.futures.Future[None]) -> None:
        try:
            if self._log_records is not None:
                await self._log_records.join()
            for producer in self._producers():
                await producer.flush()
            marker.set_result(None)
        except Exception as exc:
            marker.set_exception(exc)

    async def _close(self) -> None:
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
        left = [self._queue.popleft() for _ in range(len(self._queue))]
        await self._write(
            records((t, i, k) for t, i, k in left if not isinstance(i, concurrent.futures.Future))
        )
        if self._log_records is not None and self._log_writer is not None:
            await self._log_records.join()
            self._log_writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._log_writer
        for producer in self._producers():
            await producer.stop()
        for _, item, _ in left:
            if isinstance(item, concurrent.futures.Future):
                item.set_result(None)
