"""An Optuna study of a few trials, stored in the service's database, prunes a bad trial."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import pytest

from services.training.app import optuna_storage
from services.training.config import TrainingSettings
from services.training.domain.data import Splits
from services.training.domain.search import run_search
from services.training.domain.spec import build_spec

pytestmark = pytest.mark.unit
GOOD, BAD = 5e-3, 1e-7


def test_search_prunes_the_bad_trial_and_keeps_the_best(
    tiny_base: Path, splits: Splits, data_dir: Path
) -> None:
    spec = build_spec(
        model_name="m",
        dataset="d",
        dataset_version="v",
        base_model="tiny",
        version_task="classification",
        task=None,
        lora=False,
        # seed 1: the grid tries the good rate first, so the bad one has a median to lose to
        hyperparameters={
            "max_steps": 10,
            "eval_steps": 5,
            "per_device_train_batch_size": 8,
            "seed": 1,
        },
        trials=2,
        sampler="grid",
        space={"learning_rate": {"choices": [GOOD, BAD]}},
    )
    small = Splits(train=splits.train, validation=splits.validation[:16], test=[])
    events: list[tuple[int, str, dict[str, Any], float | None]] = []
    storage = optuna_storage(TrainingSettings(data_dir=data_dir))
    result = run_search(
        spec,
        small,
        str(tiny_base),
        data_dir / "run",
        storage=storage,
        study_name="prune-test",
        sink=lambda p: None,
        on_trial=lambda *args: events.append(args),
        checkpoint_steps=5,
        progress_every=5,
    )
    states = {t["params"]["learning_rate"]: t["state"] for t in result.trials}
    print(f"trials: {result.trials}")
    assert states == {GOOD: "complete", BAD: "pruned"}
    assert result.params == {"learning_rate": GOOD}
    assert (result.best.model_dir / "model.safetensors").is_file()
    assert [state for _, state, _, _ in events] == ["completed", "pruned"]
    # every trial is recorded in the service's database
    study = optuna.load_study(study_name="prune-test", storage=storage)
    assert len(study.trials) == 2
