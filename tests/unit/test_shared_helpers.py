"""shared/background.py (the loop of the outbox relay and the ingest runner) and
shared/claims.py (claim-checked record batches)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from shared.background import BackgroundLoop
from shared.claims import decode_batch, pack, unpack
from shared.events.ingest import Record
from shared.storage import ArtifactStore

pytestmark = pytest.mark.unit


async def wait_for(condition, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met"
        await asyncio.sleep(0.01)


async def test_a_kick_runs_the_step_and_more_work_runs_it_again_at_once() -> None:
    calls: list[int] = []

    async def step() -> bool:
        calls.append(len(calls))
        return len(calls) < 3  # three steps in a row, then wait for the next kick

    loop = BackgroundLoop("test", step, interval_s=3600)
    await loop.start()
    assert loop.alive()
    loop.kick()
    await wait_for(lambda: len(calls) == 3)
    loop.kick()
    await wait_for(lambda: len(calls) == 4)
    await loop.stop()
    assert not loop.alive()


async def test_a_failing_step_is_retried_with_backoff_and_the_loop_survives() -> None:
    outcomes = iter([RuntimeError("boom"), RuntimeError("again"), False])
    seen: list[str] = []

    async def step() -> bool:
        outcome = next(outcomes)
        seen.append(type(outcome).__name__)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    loop = BackgroundLoop("test", step, interval_s=3600, retry_s=0.01, max_retry_s=0.02)
    await loop.start()
    loop.kick()
    await wait_for(lambda: len(seen) == 3 and loop.failures == 0)  # retried without a kick
    assert loop.alive()
    await loop.stop()


def test_small_batches_stay_inline_large_ones_travel_by_claim(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path))
    records = [Record(record_id=f"r{i}", text=f"text {i}", source_id=f"t{i}") for i in range(5)]
    inline, claim = pack(records, store, max_inline_bytes=10_000)
    assert (inline, claim) == (records, None)
    inline, claim = pack(records, store, max_inline_bytes=100)
    assert inline == []
    assert claim is not None
    assert unpack(inline, claim, store, Record) == records
    assert unpack(records, None, store, Record) == records


def test_a_bad_batch_names_the_problem_not_the_text() -> None:
    assert decode_batch(b'[{"record_id": "a", "text": "x"}]', Record)[0].record_id == "a"
    with pytest.raises(ValueError, match="Invalid JSON") as info:
        decode_batch(b'{"record_id": "a", "text": "secret jane@example.com', Record)
    assert "jane" not in str(info.value)
    with pytest.raises(ValueError, match="not a list of records") as info:
        decode_batch(b'{"text": "secret jane@example.com"}', Record)
    assert "jane" not in str(info.value)
