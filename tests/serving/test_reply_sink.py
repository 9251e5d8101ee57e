"""Chunk batching of the worker's reply sink: one message per step, chunks before results."""

from __future__ import annotations

import asyncio
import json

import pytest

from services.serving.worker.adapters.kafka_sink import KafkaReplySink
from shared.events.serving import InferenceChunk, InferenceCompleted
from tests.support.stack import until

pytestmark = pytest.mark.unit


class RecordingProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, object]]] = []

    async def send(self, topic: str, value: bytes, **_kwargs: object) -> None:
        await asyncio.sleep(0)  # a real producer may suspend here
        self.sent.append((topic, json.loads(value)))

    async def flush(self) -> None:
        return None


def _chunk(request_id: str, seq: int) -> InferenceChunk:
    return InferenceChunk(request_id=request_id, seq=seq, delta=f"t{seq}", tokens=1)


async def test_chunks_of_one_step_share_a_message_and_precede_the_result() -> None:
    sink = KafkaReplySink("unused:9092", "test", window_s=0.01)
    producer = RecordingProducer()
    sink._producer = producer  # type: ignore[assignment]
    await sink.send("gw-a", _chunk("r1", 0), "r1")
    await sink.send("gw-a", _chunk("r2", 0), "r2")
    await sink.send("gw-b", _chunk("r3", 0), "r3")
    await until(lambda: len(producer.sent) == 2)  # the window flushed
    assert [(t, len(v["chunks"])) for t, v in producer.sent] == [("gw-a", 2), ("gw-b", 1)]
    await sink.send("gw-a", _chunk("r1", 1), "r1")
    done = InferenceCompleted(request_id="r1", model="m", model_version="1")
    await sink.send("gw-a", done, "r1")  # flushes r1's pending chunk first
    kinds = [v.get("kind", v.get("event_type")) for _, v in producer.sent[2:]]
    assert kinds == ["llmops.inference.chunks", "llmops.inference.completed"]
    await sink.flush()
