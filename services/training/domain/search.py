"""Hyperparameter search with Optuna: every trial a TRL run, the best one becomes the model.

The study lives in the service's database (optuna's RDB storage: SQLite or PostgreSQL),
named after the run, so a restarted run continues it: finished trials are kept, a trial
cut off by the restart is marked failed and the remaining trials run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.training.domain.data import Splits
from services.training.domain.spec import INT_PARAMS, RunSpec, SpecError
from services.training.domain.trainer import TrialResult, train_trial
from services.training.ports import ProgressSink

TrialHook = Callable[[int, str, dict[str, Any], float | None], None]


@dataclass
class SearchResult:
    best: TrialResult
    trial: int
    params: dict[str, Any]
    trials: list[dict[str, Any]] = field(default_factory=list)


def _sampler(spec: RunSpec) -> Any:
    import optuna

    seed = spec.hyperparameters.seed
    if spec.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if spec.sampler == "grid":
        grid = {name: list(r.choices or []) for name, r in spec.space.items()}
        return optuna.samplers.GridSampler(grid, seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def _suggest(trial: Any, spec: RunSpec) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for name, r in spec.space.items():
        if r.choices is not None:
            params[name] = trial.suggest_categorical(name, r.choices)
        elif name in INT_PARAMS:
            params[name] = trial.suggest_int(name, int(r.low), int(r.high), log=r.log)
        else:
            params[name] = trial.suggest_float(name, r.low, r.high, log=r.log)
    return params


def run_search(
    spec: RunSpec,
    splits: Splits,
    base_path: str,
    run_dir: Path,
    *,
    storage: Any,
    study_name: str,
    sink: ProgressSink,
    on_trial: TrialHook,
    **train_options: Any,
) -> SearchResult:
    """Run ``spec.trials`` trials (fewer if a restart already ran some); best by eval loss."""
    import optuna
    from optuna.trial import TrialState

    if not splits.validation:
        raise SpecError("empty split: a search needs validation examples (its objective)")
    study = optuna.create_study(
        study_name=study_name,
        storage=storage,
        sampler=_sampler(spec),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0),
        direction="minimize",
        load_if_exists=True,
    )
    for stale in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study._storage.set_trial_state_values(stale._trial_id, TrialState.FAIL)

    def objective(trial: optuna.Trial) -> float:
        params = _suggest(trial, spec)

        def prune(step: int, eval_loss: float) -> None:
            trial.report(eval_loss, step)
            if trial.should_prune():
                on_trial(trial.number, "pruned", params, eval_loss)
                raise optuna.TrialPruned(f"eval loss {eval_loss:.4f} at step {step}")

        result = train_trial(
            spec,
            spec.with_params(params),
            splits,
            base_path,
            run_dir / f"trial-{trial.number}",
            trial=trial.number,
            sink=sink,
            prune=prune,
            **train_options,
        )
        value = result.metrics["eval_loss"]
        trial.set_user_attr("metrics", result.metrics)
        trial.set_user_attr("history", result.history)
        on_trial(trial.number, "completed", params, value)
        return value

    remaining = spec.trials - len(study.get_trials(deepcopy=False))
    if remaining > 0:
        study.optimize(objective, n_trials=remaining, catch=())
    finished = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not finished:
        raise SpecError("no trial completed (all pruned or failed)")
    best = study.best_trial
    trials = [
        {"number": t.number, "state": t.state.name.lower(), "params": t.params, "value": t.value}
        for t in study.get_trials(deepcopy=False)
    ]
    best_dir = run_dir / f"trial-{best.number}"
    result = TrialResult(
        model_dir=best_dir / "model",
        adapter_dir=(best_dir / "adapter") if spec.lora else None,
        metrics=dict(best.user_attrs.get("metrics", {})) or {"eval_loss": float(best.value or 0.0)},
        history=list(best.user_attrs.get("history", [])),
    )
    return SearchResult(result, best.number, dict(best.params), trials)
