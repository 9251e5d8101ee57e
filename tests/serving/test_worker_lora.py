"""LoRA adapters served live on a running engine (fakes): promotion, canary, rollback,
retirement, base matching and restart, with no engine reload."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from services.serving.worker.control import ModelControl
from services.serving.worker.engines import EnginePool
from services.serving.worker.inference import InferenceService
from services.serving.worker.routing import (
    CHALLENGER,
    CHAMPION,
    ModelTable,
    UnknownVersionError,
    Version,
)
from shared.events import ClaimCheck, ModelPromoted
from shared.events.serving import InferenceRequested
from tests.serving.fakes import FakeLoader, FakeLocator, FakeSink
from tests.support.stack import until

pytestmark = pytest.mark.unit

T0 = datetime(2026, 1, 1, tzinfo=UTC)
BASE = Version("m", "base", "/base")


class Draw:
    value = 0.5

    def __call__(self) -> float:
        return self.value


def _worker(locator: FakeLocator | None = None, table: ModelTable | None = None, step_s=0.0):
    loader, sink, table = FakeLoader(step_s), FakeSink(), table or ModelTable()
    pool = EnginePool(loader, lookup=table.lookup)
    control = ModelControl(table, pool, locator or FakeLocator())
    draw = Draw()
    service = InferenceService(table, pool, sink, worker_id="w", completed_topic="done", draw=draw)
    return service, control, loader, draw


def _promoted(version: str, uri: str, seconds: int, name: str = "m", **fields) -> ModelPromoted:
    artifact = ClaimCheck(uri=uri, sha256="0" * 64, size=1, media_type="application/x-tar")
    return ModelPromoted(
        model_name=name,
        model_version=version,
        artifact=artifact,
        occurred_at=T0 + timedelta(seconds=seconds),
        **fields,
    )


async def _ask(service: InferenceService, model: str = "m", rid: str = "r") -> tuple[str, str]:
    done = await service.handle(
        InferenceRequested(
            request_id=rid,
            model=model,
            prompt="hello world",
            reply_to="replies",
            sampling={"max_tokens": 4},
        )
    )
    assert done.error is None, done.error
    return done.model_version, done.text


async def test_an_adapter_canary_runs_on_the_base_engine_without_a_reload() -> None:
    service, control, loader, draw = _worker()
    await control.promote(BASE, T0)
    engine = loader.engines["/base"]
    promoted = _promoted("a1", "lora:m:/a1", 1, alias=CHALLENGER, traffic_share=0.2)
    assert await control.apply_promotion(promoted)
    assert loader.loaded == ["/base"]  # one engine, still the same object
    assert control.pool.engines() == {BASE.key: engine}
    assert engine.added == ["m:a1"]
    draw.value = 0.1
    assert await _ask(service) == ("a1", "hello@m:a1 world@m:a1 ")
    draw.value = 0.9
    assert await _ask(service) == ("base", "hello world ")
    served = {(v.version, alias, round(share, 6)) for v, alias, share in control.table.served()}
    assert served == {("base", CHAMPION, 0.8), ("a1", CHALLENGER, 0.2)}


async def test_two_adapters_side_by_side_canary_then_instant_rollback() -> None:
    service, control, loader, draw = _worker()
    await control.promote(BASE, T0)
    engine = loader.engines["/base"]
    await control.apply_promotion(_promoted("a1", "lora:m:/a1", 1))
    await control.apply_promotion(
        _promoted("a2", "lora:m:/a2", 2, alias=CHALLENGER, traffic_share=0.5)
    )
    assert sorted(a.name for a in engine.adapters.values()) == ["m:a1", "m:a2"]
    draw.value = 0.2
    assert await _ask(service) == ("a2", "hello@m:a2 world@m:a2 ")
    draw.value = 0.7
    assert await _ask(service) == ("a1", "hello@m:a1 world@m:a1 ")
    await control.apply_promotion(_promoted("a2", "lora:m:/a2", 3))  # the canary wins
    assert await _ask(service) == ("a2", "hello@m:a2 world@m:a2 ")
    await control.rollback("m", "a1", T0 + timedelta(seconds=4))
    assert await _ask(service) == ("a1", "hello@m:a1 world@m:a1 ")
    assert loader.loaded == ["/base"]
    assert engine.added == ["m:a1", "m:a2"]  # the rollback loaded nothing: a1 stayed added
    assert not engine.closed


async def test_an_unwanted_adapter_leaves_the_engine_after_its_last_request() -> None:
    service, control, loader, draw = _worker(step_s=0.02)
    control.keep_previous = False
    await control.promote(BASE, T0)
    engine = loader.engines["/base"]
    await control.apply_promotion(
        _promoted("a1", "lora:m:/a1", 1, alias=CHALLENGER, traffic_share=1.0)
    )
    draw.value = 0.0
    running = asyncio.create_task(_ask(service))
    await until(lambda: engine.active == 1)
    await control.apply_promotion(
        _promoted("a2", "lora:m:/a2", 2, alias=CHALLENGER, traffic_share=1.0)
    )
    assert sorted(a.name for a in engine.adapters.values()) == ["m:a1", "m:a2"]  # a1 drains
    assert await running == ("a1", "hello@m:a1 world@m:a1 ")
    assert [a.name for a in engine.adapters.values()] == ["m:a2"]
    assert not engine.closed
    assert control.pool.in_flight == 0


async def test_a_full_model_still_swaps_and_adapters_keep_their_base_engine() -> None:
    service, control, loader, _ = _worker()
    control.keep_previous = False
    await control.promote(BASE, T0)
    await control.apply_promotion(_promoted("1", "lora:m:/s1", 1, name="support"))
    await control.apply_promotion(_promoted("v2", "/m2", 2))  # a full model: a new engine
    assert loader.loaded == ["/base", "/m2"]
    assert await _ask(service) == ("v2", "hello world ")
    # the "support" adapter still runs on the old base, which therefore stays up
    assert await _ask(service, "support") == ("1", "hello@support:1 world@support:1 ")
    assert not loader.engines["/base"].closed
    await control.apply_promotion(_promoted("2", "lora:m:/s2", 3, name="support"))
    assert await _ask(service, "support") == ("2", "hello@support:2 world@support:2 ")
    # "m" names v2 now: the new support adapter runs on v2's engine, the old base is free
    assert loader.engines["/m2"].added == ["support:2"]
    assert loader.engines["/base"].closed


async def test_the_base_is_found_by_name_path_weights_or_the_models_own_champion() -> None:
    locator = FakeLocator(same={("/elsewhere/tiny", "/base")})
    _, control, _, _ = _worker(locator)
    await control.promote(BASE, T0)
    await control.promote(Version("other", "1", "/other"), T0)
    assert control.base_for("x", "m") == BASE  # a served model name
    assert control.base_for("x", "/other") == Version("other", "1", "/other")  # its path
    assert control.base_for("x", "/elsewhere/tiny") == BASE  # the same weights
    assert control.base_for("other", "hub/unknown") == Version("other", "1", "/other")
    with pytest.raises(UnknownVersionError):
        control.base_for("new-name", "hub/unknown")


async def test_a_restarted_worker_restores_its_adapters_on_one_engine() -> None:
    _, control, _, _ = _worker()
    await control.promote(BASE, T0)
    await control.apply_promotion(_promoted("a1", "lora:m:/a1", 1))
    await control.apply_promotion(
        _promoted("a2", "lora:m:/a2", 2, alias=CHALLENGER, traffic_share=0.5)
    )
    restored = ModelTable.from_dict(control.table.to_dict())
    service, control2, loader, draw = _worker(table=restored)
    await control2.start()
    assert loader.loaded == ["/base"]
    assert sorted(loader.engines["/base"].added) == ["m:a1", "m:a2"]
    draw.value = 0.1
    assert await _ask(service) == ("a2", "hello@m:a2 world@m:a2 ")
    draw.value = 0.9
    assert await _ask(service) == ("a1", "hello@m:a1 world@m:a1 ")


async def test_an_adapter_whose_engine_refuses_it_changes_nothing() -> None:
    service, control, loader, _ = _worker()
    await control.promote(BASE, T0)

    async def refuse(adapter: object) -> None:
        raise RuntimeError("this engine runs without LoRA")

    loader.engines["/base"].add_adapter = refuse  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        await control.apply_promotion(_promoted("a1", "lora:m:/a1", 1))
    assert await _ask(service) == ("base", "hello world ")
    assert control.table.routes["m"].champion == BASE
