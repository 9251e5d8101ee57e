"""Runs queued evaluations one at a time, off the event loop, and records their outcome.

A ``ModelTrained`` handler only queues the version (a row); this runner picks it up, scores
candidate and champion in child processes, applies the gates and, in one unit of work,
records the result and emits ``ModelEvaluated`` (+ ``ModelPromoted`` and ``AuditRecorded``
when the gates pass and no approval is configured). A crash leaves the row queued.

Several processes of the service share the registry: a queued version is leased to the
process evaluating it (``shared.storage.lease``; renewed while it scores, its recording
fenced), so it is evaluated once; a version whose process died is evaluated by another
once the lease has run out.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from opentelemetry import metrics
from sqlmodel import Session

from services.evaluation import gates, report
from services.evaluation.adapters.store import ModelVersionRow, SqlRegistryStore
from services.evaluation.config import EvaluationSettings
from services.evaluation.domain import Evaluator, Example, examples_from
from services.evaluation.ports import ModelResolver
from services.evaluation.registry import CHAMPION, Registry, correlated
from shared.datasets import LabeledExample, iter_examples, load_manifest
from shared.events import ClaimCheck, ModelEvaluated
from shared.runtime import Runtime
from shared.storage.lease import LeaseLostError, Leases

log = logging.getLogger(__name__)
_meter = metrics.get_meter("llmops.evaluation")
_evaluations = _meter.create_counter(
    "llmops_evaluations", description="Evaluations by model and outcome."
)
_score = _meter.create_gauge(
    "llmops_evaluation_score", description="Latest evaluation score by model and metric."
)
_duration = _meter.create_histogram(
    "llmops_evaluation_duration", unit="s", description="Scoring time (generation included)."
)


class DatasetNotSeenError(Exception):
    pass


class EvaluationRunner:
    def __init__(
        self,
        runtime: Runtime,
        settings: EvaluationSettings,
        evaluator: Evaluator,
        models: ModelResolver,
    ) -> None:
        self.runtime = runtime
        self.settings = settings
        self.evaluator = evaluator
        self.models = models
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.leases = Leases(ModelVersionRow, ttl_s=settings.job_lease_s)

    def kick(self) -> None:
        self._wake.set()

    def alive(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        engine = self.runtime.engine
        assert engine is not None
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=2.0)
            self._wake.clear()
            for name, version in self._queued():
                key = {"name": name, "version": version}
                if not await asyncio.to_thread(self.leases.claim, engine, key):
                    continue  # another process evaluates it
                with self.leases.held(engine, key):
                    await self._evaluate(name, version)

    async def _evaluate(self, name: str, version: str) -> None:
        try:
            # the scoring runs in a thread (child processes), the recording on the
            # loop: the unit of work wakes the outbox relay, which lives here
            scored = await asyncio.to_thread(self.score_one, name, version)
            if scored is not None:
                self.record(name, version, *scored)
        except DatasetNotSeenError:
            return
        except LeaseLostError:
            log.warning("evaluation taken over by another process", extra={"model": name})
        except Exception as exc:
            log.exception("evaluation failed", extra={"model": name, "version": version})
            with contextlib.suppress(LeaseLostError):
                self._fail(name, version, f"{type(exc).__name__}: {exc}")

    def _queued(self) -> list[tuple[str, str]]:
        assert self.runtime.engine is not None
        with Session(self.runtime.engine) as session:
            return [(r.name, r.version) for r in SqlRegistryStore(session).queued()]

    def run_one(self, name: str, version: str) -> ModelEvaluated | None:
        """Evaluate one queued version now; returns the event it emitted (tests, CLI).
        None when it is not queued, or another process is evaluating it."""
        assert self.runtime.engine is not None
        key = {"name": name, "version": version}
        if not self.leases.claim(self.runtime.engine, key):
            return None
        with self.leases.held(self.runtime.engine, key):
            scored = self.score_one(name, version)
            return None if scored is None else self.record(name, version, *scored)

    def score_one(
        self, name: str, version: str
    ) -> tuple[dict[str, Any], list[gates.Verdict], dict[str, Any]] | None:
        """Score a queued version (and the champion); None when it is not queued."""
        assert self.runtime.engine is not None
        with Session(self.runtime.engine) as session:
            store = SqlRegistryStore(session)
            row = store.version(name, version)
            if row is None or row.status not in ("queued", "evaluating"):
                return None
            everything = self.examples(row, store)
            calibration = [e for e in everything if e.task == "rating"]
            examples = [e for e in everything if e.task != "rating"]
            champion = store.alias(name, CHAMPION)
            champion_row = store.version(name, champion.version) if champion else None
            row.status, row.attempts = "evaluating", row.attempts + 1
            session.add(row)
            session.commit()
            candidate_dir = self.models.resolve(row.artifact_json, name, version)
            champion_pair = None
            if champion_row is not None and champion_row.version != version:
                champion_pair = (
                    champion_row.version,
                    self.models.resolve(champion_row.artifact_json, name, champion_row.version),
                )
            lineage = lineage_of(row)
        config = self.settings.gates_for(name)
        started = time.perf_counter()
        result = self.evaluator.evaluate(
            candidate_dir, examples, config, champion_pair, calibration=calibration
        )
        _duration.record(time.perf_counter() - started, {"model": name})
        return result, gates.decide(config, result), lineage

    def examples(self, row: ModelVersionRow, store: SqlRegistryStore) -> list[Example]:
        found: list[Example] = []
        if row.dataset and row.dataset_version:
            manifest_json = store.manifest(row.dataset, row.dataset_version)
            if manifest_json is None:
                waited = (datetime.now(UTC) - _aware(row.registered_at)).total_seconds()
                if waited < self.settings.dataset_wait_s:
                    raise DatasetNotSeenError(row.dataset_version)
                if not self.settings.golden_sets:
                    raise LookupError(
                        f"dataset version {row.dataset}@{row.dataset_version} was never announced "
                        "(no DatasetVersioned seen) and no golden set is configured"
                    )
            else:
                manifest = load_manifest(
                    self.runtime.artifacts, ClaimCheck.model_validate_json(manifest_json)
                )
                found += examples_from(
                    iter_examples(self.runtime.artifacts, manifest), self.settings.split, "dataset"
                )
        for path in self.settings.golden_sets:
            rows = [
                LabeledExample.model_validate_json(line)
                for line in Path(path).read_text().splitlines()
                if line.strip()
            ]
            found += examples_from(rows, None, f"golden:{Path(path).name}")
        return found[: self.settings.max_examples]

    def record(
        self,
        name: str,
        version: str,
        result: dict[str, Any],
        verdicts: list[gates.Verdict],
        lineage: dict[str, Any],
    ) -> ModelEvaluated:
        config = self.settings.gates_for(name)
        passed = all(v.passed for v in verdicts)
        outcome = (
            "blocked"
            if not passed
            else "awaiting-approval"
            if config.require_approval
            else "canary"
            if config.canary_share
            else "promoted"
        )
        evaluated_at = datetime.now(UTC).isoformat()
        body = {
            "model_name": name,
            "model_version": version,
            "status": outcome,
            "evaluated_at": evaluated_at,
            "lineage": lineage,
            "gate_config": config.model_dump(),
            "verdicts": [v.as_dict() for v in verdicts],
            "result": result,
        }
        artifacts = self.runtime.artifacts
        report_claim = artifacts.put_bytes(report.report_json(body), "application/json")
        html_claim = artifacts.put_bytes(report.render_html(body).encode(), "text/html")
        card_claim = artifacts.put_bytes(report.model_card(body, lineage).encode(), "text/markdown")
        url = f"{self.settings.base_url()}/v1/registry/models/{name}/versions/{version}/report.html"
        with self.runtime.bus.unit_of_work() as uow:
            store = SqlRegistryStore(uow.session)
            row = store.version(name, version)
            assert row is not None
            row.status = "passed" if passed else "blocked"
            row.passed, row.evaluated_at = passed, datetime.now(UTC)
            row.scores_json = json.dumps(result["scores"])
            row.verdicts_json = json.dumps([v.as_dict() for v in verdicts])
            row.compared_with = (result.get("champion") or {}).get("version")
            row.report_json = report_claim.model_dump_json()
            row.report_html_json = html_claim.model_dump_json()
            row.card_json = card_claim.model_dump_json()
            row.error = None
            uow.session.add(row)
            uow.session.flush()
            self.leases.fence(uow.session, {"name": name, "version": version})  # once, or not
            event = ModelEvaluated(
                model_name=name,
                model_version=version,
                scores=result["scores"],
                gates={v.gate: v.passed for v in verdicts},
                reasons={v.gate: v.reason for v in verdicts},
                passed=passed,
                report=report_claim,
                outcome=outcome,
                compared_with=row.compared_with,
                report_url=url,
                model_card=card_claim,
                **correlated(row.correlation_id),
            )
            uow.emit(event)
            registry = Registry(store, uow.emit)
            if outcome == "promoted":
                registry.promote(name, version, "evaluation-gates", reason="gates passed")
            elif outcome == "canary":  # widened by `llmops models promote` (full traffic)
                registry.promote(
                    name,
                    version,
                    "evaluation-gates",
                    canary=config.canary_share,
                    reason="gates passed: canary first",
                )
            elif outcome == "awaiting-approval":
                row.status = "awaiting-approval"
                uow.session.add(row)
        _evaluations.add(1, {"model": name, "outcome": outcome})
        for metric, value in result["scores"].items():
            _score.set(value, {"model": name, "metric": metric})
        log.info("evaluated", extra={"model": name, "version": version, "outcome": outcome})
        return event

    def _fail(self, name: str, version: str, error: str) -> None:
        with self.runtime.bus.unit_of_work() as uow:
            row = SqlRegistryStore(uow.session).version(name, version)
            if row is not None:
                row.status, row.error = "failed", error[:4000]
                uow.session.add(row)
                uow.session.flush()
                self.leases.fence(uow.session, {"name": name, "version": version})
                uow.emit(
                    ModelEvaluated(
                        model_name=name,
                        model_version=version,
                        passed=False,
                        gates={"evaluated": False},
                        reasons={"evaluated": error[:500]},
                        outcome="blocked",
                        **correlated(row.correlation_id),
                    )
                )


def lineage_of(row: ModelVersionRow) -> dict[str, Any]:
    return {
        "run_id": row.run_id,
        "dataset": row.dataset,
        "dataset_version": row.dataset_version,
        "source": row.source,
        "registered_at": str(row.registered_at),
        "training_metrics": json.loads(row.train_metrics_json or "{}"),
        "weights": json.loads(row.artifact_json).get("uri") if row.artifact_json else None,
    }


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)
