"""One run, start to end: resolve the version, validate, train (or search), store, announce.

Every way a request can be wrong (unknown version, empty split, base model that does not
load, invalid search space) ends the run with ``status=failed`` and the reason in its
TrainingProgressed event; artifacts are stored only once training succeeded.
"""

from __future__ import annotations

import enum
import hashlib
import importlib.metadata
import json
import subprocess
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session

from services.training.adapters import store
from services.training.adapters.packaging import put_dir
from services.training.config import TrainingSettings
from services.training.domain.data import Splits, split_examples
from services.training.domain.report import loss_curve_html
from services.training.domain.search import run_search
from services.training.domain.spec import RunSpec, SpecError, build_spec
from services.training.domain.trainer import TrialResult, train_trial
from services.training.ports import Progress
from shared.datasets import DatasetManifest, iter_examples, load_manifest
from shared.events import (
    ClaimCheck,
    DatasetVersioned,
    Event,
    ModelTrained,
    TrainingProgressed,
    TrainingRequested,
)
from shared.modelkit import ensure_tiny_model
from shared.storage import ArtifactStore

BUILTIN_BASES = ("tiny", "builtin", "")
Emit = Callable[..., None]


class JobOutcome(enum.Enum):
    DONE = "done"
    FAILED = "failed"
    WAIT = "wait"  # the dataset version has not been seen yet


def mark_failed(reason: str) -> Callable[[store.TrainingRun], None]:
    def update(run: store.TrainingRun) -> None:
        run.status = "failed"
        run.reason = reason

    return update


def failed_event(request: TrainingRequested, run_id: uuid.UUID, reason: str) -> TrainingProgressed:
    return request.caused(  # type: ignore[no-any-return]
        TrainingProgressed,
        run_id=run_id,
        request_id=request.event_id,
        model_name=request.model_name,
        step=0,
        total_steps=0,
        status="failed",
        reason=reason,
    )


def code_version() -> str:
    version = importlib.metadata.version("llmops")
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
            cwd=Path(__file__).parent,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return version
    return f"{version}+{commit}" if commit else version


@dataclass
class TrainingJob:
    run_id: uuid.UUID
    request: TrainingRequested
    settings: TrainingSettings
    engine: Engine
    artifacts: ArtifactStore
    work_dir: Path
    bases_dir: Path
    optuna_storage: Callable[[], Any]
    emit: Emit

    def execute(self, version_wait_left: float) -> JobOutcome:
        try:
            manifest = self._manifest()
            if manifest is None:
                if version_wait_left > 0:
                    return JobOutcome.WAIT
                ref = f"{self.request.dataset}@{self.request.dataset_version}"
                raise SpecError(f"unknown dataset version {ref} (no DatasetVersioned seen)")
            spec = self._spec(manifest)
            splits = split_examples(
                iter_examples(self.artifacts, manifest), spec.task, spec.exclude_records
            )
            self._progress(Progress(trial=0, step=0, total_steps=0), status="running")
            base = self._base(spec, splits)
            result, trial, params, trials = self._train(spec, splits, base)
        except SpecError as exc:
            self.emit(failed_event(self.request, self.run_id, str(exc)), mark_failed(str(exc)))
            return JobOutcome.FAILED
        self._complete(
            spec, manifest, splits, result=result, trial=trial, params=params, trials=trials
        )
        return JobOutcome.DONE

    # -- steps --------------------------------------------------------------------------
    def _manifest(self) -> DatasetManifest | None:
        with Session(self.engine) as session:
            seen = store.find_version(session, self.request.dataset, self.request.dataset_version)
            if seen is None:
                return None
            versioned = DatasetVersioned.model_validate_json(seen.manifest_json)
        manifest = load_manifest(self.artifacts, versioned.manifest)
        if not manifest.labeled:
            raise SpecError(f"dataset version {manifest.dataset}@{manifest.version} is not labeled")
        return manifest

    def _spec(self, manifest: DatasetManifest) -> RunSpec:
        request = self.request
        return build_spec(
            model_name=request.model_name,
            dataset=manifest.dataset,
            dataset_version=manifest.version,
            base_model=request.base_model or self.settings.default_base_model,
            version_task=manifest.task,
            task=request.task,
            lora=request.lora,
            hyperparameters=request.hyperparameters,
            trials=request.search_trials,
            sampler=request.search_sampler,
            space=request.search_space,
            exclude_records=request.exclude_records,
        )

    def _base(self, spec: RunSpec, splits: Splits) -> str:
        """The base model's path: the built-in tiny Llama (tokenizer from this data) or as given."""
        if spec.base_model not in BUILTIN_BASES:
            return spec.base_model
        texts = splits.texts()
        key = hashlib.sha256(json.dumps(texts).encode()).hexdigest()[:16]
        return str(ensure_tiny_model(self.bases_dir / f"tiny-{key}", texts))

    def _train(
        self, spec: RunSpec, splits: Splits, base: str
    ) -> tuple[TrialResult, int, dict[str, Any], list[dict[str, Any]]]:
        options: dict[str, Any] = {
            "checkpoint_steps": self.settings.checkpoint_steps,
            "progress_every": self.settings.progress_every_steps,
        }
        if spec.trials == 0:
            result = train_trial(
                spec,
                spec.hyperparameters,
                splits,
                base,
                self.work_dir / "trial-0",
                sink=self._sink,
                **options,
            )
            return result, 0, spec.hyperparameters.model_dump(), []

        def on_trial(number: int, state: str, params: dict[str, Any], value: float | None) -> None:
            metrics = {"eval_loss": value} if value is not None else {}
            self._progress(
                Progress(trial=number, step=0, total_steps=0, eval_loss=value),
                status=f"trial_{state}",
                extra=metrics,
            )

        found = run_search(
            spec,
            splits,
            base,
            self.work_dir,
            storage=self.optuna_storage(),
            study_name=f"training-{self.run_id}",
            sink=self._sink,
            on_trial=on_trial,
            **options,
        )
        params = spec.with_params(found.params).model_dump()
        return found.best, found.trial, params, found.trials

    def _sink(self, progress: Progress) -> None:
        self._progress(progress)

    def _progress(
        self, p: Progress, status: str = "running", extra: dict[str, float] | None = None
    ) -> None:
        metrics = {
            k: v
            for k, v in {
                "loss": p.loss,
                "learning_rate": p.learning_rate,
                "eval_loss": p.eval_loss,
                "tokens_per_s": p.tokens_per_s,
            }.items()
            if v is not None
        }

        def update(run: store.TrainingRun) -> None:
            run.status = "running"

        self.emit(
            self.request.caused(
                TrainingProgressed,
                run_id=self.run_id,
                request_id=self.request.event_id,
                model_name=self.request.model_name,
                step=p.step,
                total_steps=p.total_steps,
                metrics={**metrics, **(extra or {})},
                status=status,
                trial=p.trial,
                trials=self.request.search_trials or 1,
                loss=p.loss,
                learning_rate=p.learning_rate,
                tokens_per_s=p.tokens_per_s,
                eta_s=p.eta_s,
            ),
            update,
        )

    def _complete(
        self,
        spec: RunSpec,
        manifest: DatasetManifest,
        splits: Splits,
        *,
        result: TrialResult,
        trial: int,
        params: dict[str, Any],
        trials: list[dict[str, Any]],
    ) -> None:
        artifact = put_dir(self.artifacts, result.model_dir)
        adapter = put_dir(self.artifacts, result.adapter_dir) if result.adapter_dir else None
        title = f"{spec.model_name} on {manifest.dataset}@{manifest.version} (trial {trial})"
        curve: ClaimCheck | None = None
        if result.history:
            curve = self.artifacts.put_bytes(loss_curve_html(result.history, title), "text/html")
        version = artifact.sha256[:16]
        event: Event = self.request.caused(
            ModelTrained,
            event_id=uuid.uuid5(self.run_id, "model-trained"),
            run_id=self.run_id,
            request_id=self.request.event_id,
            model_name=spec.model_name,
            model_version=version,
            artifact=artifact,
            dataset=manifest.dataset,
            dataset_version=manifest.version,
            metrics=result.metrics,
            base_model=spec.base_model or "tiny",
            task=spec.task,
            lora=spec.lora,
            parameters=params,
            trial=trial,
            trials=trials,
            code_version=code_version(),
            record_ids=splits.record_ids,
            subject_ids=splits.subject_ids,
            adapter=adapter,
            loss_curve=curve,
        )

        def update(run: store.TrainingRun) -> None:
            run.status = "completed"
            run.model_version = version
            run.result = {
                "metrics": result.metrics,
                "trial": trial,
                "artifact": artifact.uri,
                "dataset_version": manifest.version,  # what "latest" meant for this run
            }

        self.emit(event, update)
