"""The worker's logic (version choice, streaming, deadlines, live switches) with fakes."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from services.serving.worker.control import ModelControl
from services.serving.worker.engines import EnginePool
from services.serving.worker.inference import InferenceService
from services.serving.worker.routing import CHALLENGER, ModelTable, Version
from shared.events.serving import (
    ChatMessage,
    InferenceCompleted,
    InferenceRequested,
)
from shared.wire import Chunk
from tests.serving.fakes import FakeLoader, FakeLocator, FakeSink
from tests.support.stack import until

pytestmark = pytest.mark.unit


def _service(step_s: float = 0.0, draw: float = 0.5):
    loader, sink, table = FakeLoader(step_s), FakeSink(), ModelTable()
    pool = EnginePool(loader)
    control = ModelControl(table, pool, FakeLocator())
    service = InferenceService(
        table, pool, sink, worker_id="w", completed_topic="done", draw=lambda: draw
    )
    return service, control, loader, sink


def _request(**fields) -> InferenceRequested:
    base = {
        "request_id": "r1",
        "model": "m",
        "prompt": "one two three",
        "reply_to": "replies",
        "sampling": {"max_tokens": 8},
    }
    return InferenceRequested(**{**base, **fields})


async def test_streams_chunks_in_order_then_completes_on_both_topics() -> None:
    service, control, _, sink = _service()
    await control.promote(Version("m", "1", "/m1"), datetime.now(UTC))
    done = await service.handle(_request(stream=True))
    chunks = [e for e in sink.on("replies") if isinstance(e, Chunk)]
    assert [c.seq for c in chunks] == [0, 1, 2]
    assert "".join(c.delta for c in chunks) == "one two three " == done.text
    assert done.model_version == "1"
    assert done.finish_reason == "stop"
    assert done.prompt == "one two three"
    assert done.completion_tokens == 3
    assert sink.on("done") == [done]
    assert sink.on("replies")[-1] == done


async def test_chat_and_n_choices() -> None:
    service, control, _, _ = _service()
    await control.promote(Version("m", "1", "/m1"), datetime.now(UTC))
    done = await service.handle(
        _request(
            prompt="",
            messages=[ChatMessage(role="user", content="a b")],
            sampling={"max_tokens": 8, "n": 2},
        )
    )
    assert [c.text for c in done.choices] == ["a b ", "a b "]
    assert done.completion_tokens == 4


async def test_errors_become_completed_events() -> None:
    service, control, _, _ = _service()
    await control.promote(Version("m", "1", "/m1"), datetime.now(UTC))
    unknown = await service.handle(_request(model="other"))
    assert unknown.error_type == "not_found"
    too_long = await service.handle(_request(prompt="w " * 100))
    assert too_long.error_type == "invalid_request"
    late = await service.handle(_request(occurred_at=datetime.now(UTC) - timedelta(seconds=60)))
    assert late.error_type == "deadline_exceeded"


async def test_deadline_aborts_a_running_generation() -> None:
    service, control, loader, _ = _service(step_s=0.05)
    await control.promote(Version("m", "1", "/m1"), datetime.now(UTC))
    done = await service.handle(_request(prompt="a b c d e f g", deadline_ms=120))
    assert done.error_type == "deadline_exceeded"
    assert loader.engines["/m1"].aborted == ["r1"]


async def test_promotion_switches_without_dropping_in_flight() -> None:
    service, control, loader, _ = _service(step_s=0.02)
    await control.promote(Version("m", "1", "/m1"), datetime.now(UTC))
    control.keep_previous = False
    running = asyncio.create_task(service.handle(_request(prompt="a b c d e f")))
    await until(lambda: loader.engines["/m1"].active == 1)  # generating on version 1
    await control.promote(Version("m", "2", "/m2"), datetime.now(UTC))
    assert not loader.engines["/m1"].closed  # still generating: drains first
    old = await running
    assert old.model_version == "1"
    assert old.error is None
    assert old.completion_tokens == 6
    assert loader.engines["/m1"].closed
    new = await service.handle(_request(request_id="r2"))
    assert new.model_version == "2"


async def test_canary_and_rollback() -> None:
    service, control, _, _ = _service(draw=0.05)
    t0 = datetime.now(UTC)
    await control.promote(Version("m", "1", "/m1"), t0)
    await control.promote(
        Version("m", "2", "/m2"), t0 + timedelta(seconds=1), alias=CHALLENGER, share=0.1
    )
    canary = await service.handle(_request())
    assert (canary.model_version, canary.alias) == ("2", CHALLENGER)
    await control.promote(Version("m", "2", "/m2"), t0 + timedelta(seconds=2))
    await control.rollback("m", "1", t0 + timedelta(seconds=3))
    assert (await service.handle(_request())).model_version == "1"
    assert control.is_stale(t0 + timedelta(seconds=2))


async def test_a_failed_load_keeps_serving_the_champion() -> None:
    service, control, _, _ = _service()
    await control.promote(Version("m", "1", "/m1"), datetime.now(UTC))
    with pytest.raises(FileNotFoundError):
        await control.promote(Version("m", "2", "missing/m2"), datetime.now(UTC))
    assert (await service.handle(_request())).model_version == "1"


def test_completed_event_is_tolerantly_decodable() -> None:
    from shared.events import decode

    event = InferenceCompleted(request_id="r", model="m", model_version="1")
    assert decode(event.to_bytes(), expected=InferenceCompleted) == event


async def test_a_cancel_aborts_the_generation_and_reports_what_was_generated() -> None:
    service, control, loader, sink = _service(step_s=0.02)
    await control.promote(Version("m", "1", "/m1"), datetime.now(UTC))
    running = asyncio.create_task(service.handle(_request(prompt="a b c d e f g h", stream=True)))
    await until(lambda: len(sink.on("replies")) >= 2)  # two words streamed
    assert await service.cancel("r1")
    done = await running
    assert done.finish_reason == "abort"
    assert 2 <= done.completion_tokens < 8
    assert loader.engines["/m1"].aborted == ["r1"]
    assert service.pool.in_flight == 0
    assert not await service.cancel("r1")  # not running any more: nothing to do


async def test_logprobs_reach_the_reply_but_not_the_catalogue_and_unknown_params_fail() -> None:
    service, control, _, sink = _service()
    await control.promote(Version("m", "1", "/m1"), datetime.now(UTC))
    done = await service.handle(_request(sampling={"max_tokens": 2, "logprobs": 1}))
    assert done.choices[0].logprobs == [
        {"token": "one ", "logprob": -0.5, "top": [["one ", -0.5]]},
        {"token": "two ", "logprob": -0.5, "top": [["two ", -0.5]]},
    ]
    catalogue = sink.on("done")[0]
    assert isinstance(catalogue, InferenceCompleted)
    assert catalogue.choices[0].logprobs is None
    assert catalogue.choices[0].text == done.choices[0].text
    newer = await service.handle(_request(request_id="r2", sampling={"beam_width": 3}))
    assert newer.error_type == "invalid_request"
    assert "beam_width" in (newer.error or "")
