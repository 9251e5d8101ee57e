"""LoRA adapters live on one real vLLM engine (tests/serving/lora_check.py, a child process:
vLLM spawns): an adapter canary over its base, two adapters side by side in one batch,
promotion and rollback, the engine never reloaded, each answer the adapter's own."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from shared.client import PlatformClient
from shared.events import ClaimCheck, ModelPromoted
from shared.modelkit import MODEL_DIR_MEDIA_TYPE
from shared.settings import ServiceSettings
from tests.serving.stack import ServingStack
from tests.support.stack import wait_until

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def test_two_adapters_on_one_engine_canary_and_rollback(
    tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "tests.serving.lora_check", str(tmp_path), str(tiny_models["v1"])],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    line = next((x for x in proc.stdout.splitlines() if x.startswith("LORA ")), None)
    assert line is not None, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(line.removeprefix("LORA "))
    expected, steps = result["expected"], {s["step"]: s for s in result["steps"]}
    # the adapters change the greedy answer: a wrong routing could not pass unseen
    assert len(set(expected.values())) == 3

    def answered(step: str) -> list[tuple[str, str]]:
        for version, _alias, text, error in steps[step]["answers"]:
            assert error is None
            want = expected["base" if version == "bootstrap" else version]
            # vLLM holds back a trailing partial UTF-8 character; transformers prints U+FFFD
            assert text, (step, version)
            assert want.startswith(text), (step, version, text, want)
        return [(version, alias) for version, alias, _text, _error in steps[step]["answers"]]

    assert answered("base") == [("bootstrap", "champion")]
    assert answered("canary-a1") == [
        ("a1", "challenger"),
        ("bootstrap", "champion"),
        ("a1", "challenger"),
        ("bootstrap", "champion"),
    ]
    assert answered("side-by-side") == [
        ("a2", "challenger"),
        ("a1", "champion"),
        ("a2", "challenger"),
        ("a1", "champion"),
    ]
    assert answered("a2-champion") == [("a2", "champion")]
    assert answered("rolled-back") == [("a1", "champion")]
    # one engine all along (never reloaded); the adapters were added and removed live
    engines = {tuple(s["engines"]) for s in result["steps"]}
    assert len(engines) == 1
    assert len(next(iter(engines))) == 1
    assert [s["adapters"] for s in result["steps"]] == [[], [1], [1, 2], [1, 2], [1]]
    assert result["restored"] == {"llmops-tiny": ["a1"]}


def test_adapters_promoted_through_kafka_survive_a_worker_restart(
    kafka: str, tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    """The whole path: worker process with LLMOPS_WORKER_MAX_LORAS, promotions on Kafka, the
    gateway's answers (version and text) per adapter, then a restarted worker serving the same
    adapters from its saved routing table."""
    from tests.serving.conftest import ADMIN_KEY
    from tests.serving.lora_check import PROMPT, TOKENS, hf_answer, make_adapter

    base = tiny_models["v1"]
    adapters = {v: make_adapter(base, tmp_path / v, seed=s) for v, s in (("a1", 1), ("a2", 2))}
    expected = {v: hf_answer(base, path) for v, path in adapters.items()}
    settings = ServiceSettings(kafka_bootstrap=kafka)

    async def publish(*events: ModelPromoted) -> None:
        async with PlatformClient(settings, producer_name="test") as client:
            for event in events:
                await client.publish(event)

    def promoted(version: str, **fields: Any) -> ModelPromoted:
        path = adapters[version]
        claim = ClaimCheck(uri=str(path), sha256="0" * 64, size=1, media_type=MODEL_DIR_MEDIA_TYPE)
        return ModelPromoted(
            model_name="llmops-tiny", model_version=version, artifact=claim, **fields
        )

    stack = ServingStack(kafka, tmp_path / "stack", base, ADMIN_KEY)
    stack.env["LLMOPS_WORKER_MAX_LORAS"] = "2"

    def answers() -> dict[str, set[str]]:
        seen: dict[str, set[str]] = {}
        for _ in range(12):
            out = stack.client().completions.create(
                model="llmops-tiny",
                prompt=PROMPT,
                max_tokens=TOKENS,
                temperature=0.0,
                extra_body={"min_tokens": TOKENS},
            )
            seen.setdefault(out.system_fingerprint or "", set()).add(out.choices[0].text)
        return seen

    def both_adapters() -> dict[str, set[str]] | None:
        seen = answers()
        return seen if set(seen) == {"a1", "a2"} else None

    with stack.start(workers=1, gateways=1):
        asyncio.run(publish(promoted("a1"), promoted("a2", alias="challenger", traffic_share=0.5)))
        seen = wait_until(both_adapters, timeout=120, interval=1)
        for version, texts in seen.items():
            assert len(texts) == 1
            assert expected[version].startswith(next(iter(texts)))
        worker = stack.workers[0]
        worker.stop()
        worker.start(timeout=300)
        seen = wait_until(both_adapters, timeout=60, interval=1)
        # restored from the saved table (no replay: its promotions are stale), one engine
        log = worker.log_path.read_text(errors="replace")
        assert log.count("adapter added") == 4
        assert log.count("model loaded") == 2
        assert {v: len(t) for v, t in seen.items()} == {"a1": 1, "a2": 1}
