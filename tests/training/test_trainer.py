"""The tiny model really learns; LoRA works; a killed run resumes to the same result."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from services.training.domain.data import Splits
from services.training.domain.evaluate import exact_match
from services.training.domain.spec import build_spec
from services.training.domain.trainer import load_base, train_trial
from services.training.ports import Progress

pytestmark = pytest.mark.unit


def _spec(lora: bool = False, **hyper: object):  # type: ignore[no-untyped-def]
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


def test_tiny_model_learns_the_classification_task(
    tiny_base: Path, splits: Splits, tmp_path: Path
) -> None:
    seen: list[Progress] = []
    spec = _spec()
    result = train_trial(
        spec, spec.hyperparameters, splits, str(tiny_base), tmp_path, sink=seen.append
    )
    model, tokenizer = load_base(str(result.model_dir))
    accuracy = exact_match(model, tokenizer, splits.test)
    majority = Counter(e.completion for e in splits.test).most_common(1)[0][1] / len(splits.test)
    print(f"held-out accuracy {accuracy:.2f} vs majority baseline {majority:.2f}")
    assert accuracy >= majority + 0.3
    assert result.metrics["eval_exact_match"] >= majority + 0.3
    steps = [p.step for p in seen if p.loss is not None]
    assert steps == sorted(steps)
    assert steps[-1] == spec.hyperparameters.max_steps
    assert any(p.tokens_per_s for p in seen)
    assert (result.model_dir / "model.safetensors").is_file()
    assert (result.model_dir / "generation_config.json").is_file()


class Killed(Exception):
    pass


def test_killed_run_resumes_to_the_same_weights(
    tiny_base: Path, splits: Splits, tmp_path: Path
) -> None:
    spec = _spec(max_steps=20)
    options = {"checkpoint_steps": 10, "progress_every": 5}
    unbroken = train_trial(
        spec,
        spec.hyperparameters,
        splits,
        str(tiny_base),
        tmp_path / "a",
        sink=lambda p: None,
        **options,
    )

    def die_after_checkpoint(progress: Progress) -> None:
        if progress.step >= 15:
            raise Killed

    with pytest.raises(Killed):
        train_trial(
            spec,
            spec.hyperparameters,
            splits,
            str(tiny_base),
            tmp_path / "b",
            sink=die_after_checkpoint,
            **options,
        )
    assert (tmp_path / "b" / "checkpoint-10").is_dir()
    resumed_steps: list[int] = []
    resumed = train_trial(
        spec,
        spec.hyperparameters,
        splits,
        str(tiny_base),
        tmp_path / "b",
        sink=lambda p: resumed_steps.append(p.step),
        **options,
    )
    assert min(resumed_steps) > 10  # it did not start over
    a = load_file(unbroken.model_dir / "model.safetensors")
    b = load_file(resumed.model_dir / "model.safetensors")
    for name, tensor in a.items():
        torch.testing.assert_close(tensor, b[name], rtol=0, atol=1e-6)


def test_lora_trains_an_adapter_and_merges_it(
    tiny_base: Path, splits: Splits, tmp_path: Path
) -> None:
    spec = _spec(lora=True, max_steps=10, learning_rate=1e-2)
    result = train_trial(
        spec, spec.hyperparameters, splits, str(tiny_base), tmp_path, sink=lambda p: None
    )
    assert result.adapter_dir is not None
    assert (result.adapter_dir / "adapter_config.json").is_file()
    merged = load_file(result.model_dir / "model.safetensors")
    assert not any("lora" in name for name in merged)
    base = load_file(tiny_base / "model.safetensors")
    changed = [n for n in base if n in merged and not torch.equal(base[n], merged[n])]
    assert changed, "merging the adapter changed no weight"
