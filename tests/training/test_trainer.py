"""The tiny model really learns; LoRA works; both load in vLLM; a killed run resumes exactly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from services.training.adapters.packaging import put_dir
from services.training.domain.data import Splits
from services.training.domain.evaluate import exact_match
from services.training.domain.spec import RunSpec, build_spec
from services.training.domain.trainer import TrialResult, load_base, train_trial
from services.training.ports import Progress
from shared.storage import ArtifactStore

pytestmark = pytest.mark.unit
HERE = Path(__file__).parent


def _spec(lora: bool = False, **hyper: object) -> RunSpec:
    return build_spec(
        model_name="m",
        dataset="d",
        dataset_version="v",
        base_model="tiny",
        version_task="classification",
        task=None,
        lora=lora,
        hyperparameters=dict(hyper),
        trials=0,
        sampler="tpe",
        space={},
    )


@pytest.fixture(scope="module")
def full_run(
    tiny_base: Path, splits: Splits, tmp_path_factory: pytest.TempPathFactory
) -> tuple[TrialResult, list[Progress]]:
    seen: list[Progress] = []
    spec = _spec(max_steps=80)
    result = train_trial(
        spec,
        spec.hyperparameters,
        splits,
        str(tiny_base),
        tmp_path_factory.mktemp("full"),
        sink=seen.append,
        checkpoint_steps=80,
        progress_every=10,
    )
    return result, seen


@pytest.fixture(scope="module")
def lora_run(
    tiny_base: Path, splits: Splits, tmp_path_factory: pytest.TempPathFactory
) -> TrialResult:
    spec = _spec(lora=True, max_steps=5, learning_rate=1e-2, per_device_train_batch_size=8)
    small = Splits(train=splits.train, validation=splits.validation[:8])
    return train_trial(
        spec,
        spec.hyperparameters,
        small,
        str(tiny_base),
        tmp_path_factory.mktemp("lora"),
        sink=lambda p: None,
        checkpoint_steps=5,
    )


def test_tiny_model_learns_the_classification_task(
    full_run: tuple[TrialResult, list[Progress]], splits: Splits
) -> None:
    result, seen = full_run
    model, tokenizer = load_base(str(result.model_dir))
    accuracy = exact_match(model, tokenizer, splits.test)
    majority = Counter(e.completion for e in splits.test).most_common(1)[0][1] / len(splits.test)
    print(f"held-out accuracy {accuracy:.2f} vs majority baseline {majority:.2f}")
    assert accuracy >= majority + 0.3
    assert result.metrics["eval_exact_match"] >= majority + 0.3
    steps = [p.step for p in seen if p.loss is not None]
    assert steps == sorted(steps)
    assert steps[-1] == 80
    assert any(p.tokens_per_s for p in seen)
    assert any(p.eval_loss is not None for p in seen)
    assert (result.model_dir / "model.safetensors").is_file()
    assert (result.model_dir / "generation_config.json").is_file()


def test_lora_trains_an_adapter_and_merges_it(lora_run: TrialResult, tiny_base: Path) -> None:
    assert lora_run.adapter_dir is not None
    assert (lora_run.adapter_dir / "adapter_config.json").is_file()
    merged = load_file(lora_run.model_dir / "model.safetensors")
    assert not any("lora" in name for name in merged)
    base = load_file(tiny_base / "model.safetensors")
    changed = [n for n in base if n in merged and not torch.equal(base[n], merged[n])]
    assert changed, "merging the adapter changed no weight"


def test_full_and_lora_models_load_in_vllm_from_the_artifact_store(
    full_run: tuple[TrialResult, list[Progress]],
    lora_run: TrialResult,
    splits: Splits,
    tmp_path: Path,
) -> None:
    from services.serving.worker.adapters.model_source import ModelSource

    store = ArtifactStore(str(tmp_path / "artifacts"))
    source = ModelSource(tmp_path / "models", store)
    dirs = [source.resolve(put_dir(store, r.model_dir)) for r in (full_run[0], lora_run)]
    held_out = splits.test[0]  # in the task's distribution, never trained on
    prompt = held_out.prompt
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "VLLM_LOGGING_LEVEL": "WARNING"}
    done = subprocess.run(
        [sys.executable, str(HERE / "vllm_check.py"), prompt, *dirs],
        capture_output=True,
        text=True,
        timeout=400,
        env=env,
        check=False,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("ANSWERS ")]
    assert lines, done.stderr[-3000:]
    answers = json.loads(lines[-1].removeprefix("ANSWERS "))
    expected = (held_out.completion or "").strip()
    assert answers[dirs[0]].strip().startswith(expected)  # the full fine-tune learned it
    assert answers[dirs[1]]  # the merged LoRA model loads and answers


class Killed(Exception):
    pass


def test_killed_run_resumes_to_the_same_weights(
    tiny_base: Path, splits: Splits, tmp_path: Path
) -> None:
    spec = _spec(max_steps=12, per_device_train_batch_size=8)
    small = Splits(train=splits.train)
    options = {"checkpoint_steps": 6, "progress_every": 3}
    unbroken = train_trial(
        spec, spec.hyperparameters, small, str(tiny_base), tmp_path / "a",
        sink=lambda p: None, **options,
    )  # fmt: skip

    def die_after_checkpoint(progress: Progress) -> None:
        if progress.step >= 9:
            raise Killed

    with pytest.raises(Killed):
        train_trial(
            spec, spec.hyperparameters, small, str(tiny_base), tmp_path / "b",
            sink=die_after_checkpoint, **options,
        )  # fmt: skip
    assert (tmp_path / "b" / "checkpoint-6").is_dir()
    resumed_steps: list[int] = []
    resumed = train_trial(
        spec, spec.hyperparameters, small, str(tiny_base), tmp_path / "b",
        sink=lambda p: resumed_steps.append(p.step), **options,
    )  # fmt: skip
    assert min(resumed_steps) > 6  # it went on from the checkpoint, not from the start
    a = load_file(unbroken.model_dir / "model.safetensors")
    b = load_file(resumed.model_dir / "model.safetensors")
    for name, tensor in a.items():
        torch.testing.assert_close(tensor, b[name], rtol=0, atol=1e-6)


def test_dpo_trains_on_a_preference_version(tiny_base: Path, tmp_path: Path) -> None:
    from services.training import synthetic
    from services.training.domain.data import split_examples
    from shared.datasets import LabeledExample

    rows = synthetic.preference_records(32)
    splits = split_examples([LabeledExample.model_validate(r) for r in rows], "dpo")
    spec = build_spec(
        model_name="m", dataset="d", dataset_version="v", base_model="tiny",
        version_task="preference", task=None, lora=False,
        hyperparameters={"max_steps": 3, "per_device_train_batch_size": 8},
        trials=0, sampler="tpe", space={},
    )  # fmt: skip
    assert spec.task == "dpo"
    seen: list[Progress] = []
    result = train_trial(
        spec, spec.hyperparameters, splits, str(tiny_base), tmp_path, sink=seen.append,
        checkpoint_steps=3, progress_every=1,
    )  # fmt: skip
    assert [p.step for p in seen if p.loss is not None] == [1, 2, 3]
    assert "eval_loss" in result.metrics
    assert (result.model_dir / "model.safetensors").is_file()
