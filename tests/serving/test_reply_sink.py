"""The worker's reply sink: chunks coalesce into one frame per topic, results follow their
chunks, and the writing happens on the sink's own thread and loop, never the engine's."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest

from services.serving.worker.adapters.kafka_sink import KafkaReplySink, records
from shared.events.serving import InferenceCompleted
from shared.wire import Chunk, coalesce, decode_chunks, reply_topic
from tests.support.stack import until

pytestmark = pytest.mark.unit


def _chunk(request_id: str, seq: int) -> Chunk:
    return Chunk(request_id=request_id, seq=seq, delta=f"t{seq}", tokens=1)


def _done(request_id: str) -> InferenceCompleted:
    return InferenceCompleted(request_id=request_id, model="m", model_version="1")


def test_chunks_queued_together_share_a_frame_per_topic_and_precede_the_result() -> None:
    out = records(
        [
            ("gw-a", _chunk("r1", 0), "r1"),
            ("gw-a", _chunk("r2", 0), "r2"),
            ("gw-b", _chunk("r3", 0), "r3"),
            ("gw-a", _chunk("r1", 1), "r1"),
            ("gw-a", _done("r1"), "r1"),  # flushes gw-a's chunks first
            ("gw-a", _chunk("r2", 1), "r2"),
        ]
    )
    shapes = []
    for topic, value, key, headers in out:
        chunks = decode_chunks(value)
        if chunks is None:
            shapes.append((topic, json.loads(value)["event_type"], key, dict(headers or [])))
        else:
            pieces = [(c.request_id, c.seq, c.delta, c.tokens) for c in chunks]
            shapes.append((topic, pieces, key, headers))
    assert shapes == [  # one chunk per request in a frame: r1's two steps joined
        ("gw-a", [("r1", 0, "t0t1", 2), ("r2", 0, "t0", 1)], None, None),
        (
            "gw-a",
            "llmops.inference.completed",
            b"r1",
            {"event_type": b"llmops.inference.completed", "schema_version": b"1"},
        ),
        ("gw-b", [("r3", 0, "t0", 1)], None, None),
        ("gw-a", [("r2", 1, "t1", 1)], None, None),
    ]


def test_coalesced_chunks_keep_choices_apart_and_logprobs_in_order() -> None:
    lp = [{"token": "a", "logprob": -0.1, "top": []}]
    chunks = [
        Chunk(request_id="r", seq=0, delta="a", index=0, tokens=1, logprobs=lp),
        Chunk(request_id="r", seq=1, delta="x", index=1, tokens=1, logprobs=lp),
        Chunk(request_id="r", seq=2, delta="b", index=0, tokens=2, logprobs=lp + lp),
    ]
    merged = coalesce(chunks)
    assert [(c.index, c.seq, c.delta, c.tokens, len(c.logprobs or [])) for c in merged] == [
        (0, 0, "ab", 3, 3),
        (1, 1, "x", 1, 1),
    ]


class RecordingProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []
        self.threads: set[str] = set()
        self.loops: set[type] = set()
        self.flushed = 0
        self.stopped = False

    async def start(self) -> None:
        return None

    async def send(self, topic: str, value: bytes, **_kwargs: object) -> None:
        self.threads.add(threading.current_thread().name)
        self.loops.add(type(asyncio.get_running_loop()))
        await asyncio.sleep(0)  # a real producer may suspend here
        self.sent.append((topic, value))

    async def flush(self) -> None:
        self.flushed += 1

    async def stop(self) -> None:
        self.stopped = True


async def test_sends_return_at_once_and_are_written_in_order_on_the_sink_thread() -> None:
    producer = RecordingProducer()
    sink = KafkaReplySink("unused:9092", "test", producer_factory=lambda: producer)
    await sink.start()
    try:
        for seq in range(50):
            await sink.send("gw-a", _chunk("r1", seq), "r1")
        await sink.send("gw-a", _done("r1"), "r1")
        await sink.flush()  # everything sent before is written, then the producer flushed
        assert producer.flushed == 1
        assert producer.threads == {"reply-sink"}
        text, tokens, tail = [], 0, []
        for topic, value in producer.sent:
            assert topic == "gw-a"
            chunks = decode_chunks(value)
            if chunks is None:
                tail.append(json.loads(value)["request_id"])
            else:
                assert not tail, "a chunk after the result"
                text += [c.delta for c in chunks]
                tokens += sum(c.tokens for c in chunks)
        assert "".join(text) == "".join(f"t{seq}" for seq in range(50))  # in order, all
        assert tokens == 50
        assert tail == ["r1"]
        assert len(producer.sent) <= 51
    finally:
        await sink.stop()
    assert producer.stopped


async def test_the_sink_thread_runs_uvloop_when_installed() -> None:
    """Its loop wakes for every frame the engine produces: uvloop's costs less CPU, beside
    the engine, than asyncio's (the worker's own loop runs on it too: ``run_app``)."""
    uvloop = pytest.importorskip("uvloop")
    producer = RecordingProducer()
    sink = KafkaReplySink("unused:9092", "test", producer_factory=lambda: producer)
    await sink.start()
    try:
        await sink.send("gw-a", _done("r1"), "r1")
        await sink.flush()
    finally:
        await sink.stop()
    assert producer.loops == {uvloop.Loop}


async def test_a_send_before_start_is_refused() -> None:
    sink = KafkaReplySink("unused:9092", "test", producer_factory=RecordingProducer)
    with pytest.raises(RuntimeError):
        await sink.send("gw-a", _chunk("r1", 0), "r1")


async def test_paced_chunks_share_a_frame_and_first_chunks_and_results_never_wait() -> None:
    producer = RecordingProducer()
    sink = KafkaReplySink(
        "unused:9092", "test", producer_factory=lambda: producer, interval_s=3600.0
    )
    await sink.start()
    try:
        await sink.send("gw-a", _chunk("r1", 0), "r1")  # a first chunk: out at once
        await until(lambda: len(producer.sent) == 1, timeout=30)
        await sink.send("gw-a", _chunk("r1", 1), "r1")  # paced: waits for the interval...
        await sink.send("gw-a", _chunk("r1", 2), "r1")
        await sink.send("gw-a", _done("r1"), "r1")  # ... unless a result comes
        await until(lambda: len(producer.sent) == 3, timeout=30)
        frames = [decode_chunks(value) for _, value in producer.sent]
        assert [[(c.seq, c.delta) for c in f] if f is not None else "result" for f in frames] == [
            [(0, "t0")],
            [(1, "t1t2")],  # one chunk: the two steps' text joined
            "result",
        ]
    finally:
        await sink.stop()


class StuckProducer(RecordingProducer):
    """The durable log's producer with its batch full behind a slow write: ``send`` waits."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    async def send(self, topic: str, value: bytes, **kwargs: object) -> None:
        await asyncio.to_thread(self.release.wait)
        await super().send(topic, value, **kwargs)


async def test_a_stuck_durable_log_write_never_holds_up_the_replies() -> None:
    """With the serving hops on a broker of their own, the durable log's records go out from
    a task of their own: a send that waits there (aiokafka waits while a batch is full) does
    not stop the chunks and results behind it; a flush waits for both."""
    durable, hot = StuckProducer(), RecordingProducer()
    made = iter([durable, hot])  # the main log's producer first, then the hops'
    sink = KafkaReplySink(
        "main:1", "t", producer_factory=lambda: next(made), ephemeral_bootstrap="hot:1"
    )
    await sink.start()
    try:
        await sink.send("llmops.inference.completed", _done("r0"), "r0")
        await sink.send(reply_topic("gw-a"), _chunk("r1", 0), "r1")
        await sink.send(reply_topic("gw-a"), _done("r1"), "r1")
        await until(lambda: len(hot.sent) == 2, timeout=30)
        assert durable.sent == []  # still stuck
        flushed = asyncio.ensure_future(sink.flush())
        done, _ = await asyncio.wait({flushed}, timeout=0.2)  # a flush that did not wait for
        assert not done  # the durable log's records would be done by now; a right one never is
        durable.release.set()
        await asyncio.wait_for(flushed, 30)
        assert [topic for topic, _ in durable.sent] == ["llmops.inference.completed"]
    finally:
        durable.release.set()
        await sink.stop()


async def test_the_durable_log_producer_lingers_only_beside_a_hops_broker() -> None:
    beside = KafkaReplySink("main:1", "t", ephemeral_bootstrap="hot:1", log_linger_s=0.1)
    alone = KafkaReplySink("main:1", "t", log_linger_s=0.1)  # one broker carries the replies
    assert (beside.log_linger_s, alone.log_linger_s) == (0.1, 0.0)
    lingering = beside._producer("main:1", beside.log_linger_s)._message_accumulator
    hops = beside._producer("hot:1")._message_accumulator
    assert (lingering._linger_time, lingering._batch_size) == (0.1, 1024 * 1024)
    assert (hops._linger_time, hops._batch_size) == (0, 16384)  # a reply never waits


class PartitionedProducer(RecordingProducer):
    """A producer whose topics have six partitions; records where each send put it."""

    def __init__(self) -> None:
        super().__init__()
        self.partitions: list[int | None] = []

    async def partitions_for(self, _topic: str) -> set[int]:
        return set(range(6))

    async def send(self, topic: str, value: bytes, **kwargs: object) -> None:
        self.partitions.append(kwargs.get("partition"))  # type: ignore[arg-type]
        await super().send(topic, value, **kwargs)


async def test_a_lingers_results_share_one_partition_and_replies_keep_theirs() -> None:
    """The durable log's records of one linger go to one partition (unique keys order
    nothing; spread over six they cost the log's store six objects per write); the next
    linger's to another; the hops' records are left to their keys."""
    durable, hot = PartitionedProducer(), PartitionedProducer()
    made = iter([durable, hot])
    sink = KafkaReplySink(
        "main:1",
        "t",
        producer_factory=lambda: next(made),
        ephemeral_bootstrap="hot:1",
        log_linger_s=3600.0,  # one window for the whole test (a boundary: once in hours)
    )
    await sink.start()
    try:
        for i in range(12):
            await sink.send("llmops.inference.completed", _done(f"r{i}"), f"r{i}")
            await sink.send(reply_topic("gw-a"), _done(f"r{i}"), f"r{i}")
        await sink.flush()
    finally:
        await sink.stop()
    assert len(durable.partitions) == 12
    assert len(set(durable.partitions)) == 1
    assert durable.partitions[0] in range(6)
    assert hot.partitions == [None] * 12  # by key, as before
