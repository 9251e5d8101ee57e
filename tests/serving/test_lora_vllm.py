"""LoRA adapters live on one real vLLM engine (tests/serving/lora_check.py, a child process:
vLLM spawns): an adapter canary over its base, two adapters side by side in one batch,
promotion and rollback, the engine never reloaded, each answer the adapter's own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

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
