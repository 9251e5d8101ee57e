"""Use cases of monitoring: records in -> windows -> drift, SLO alerts, retraining decisions.

Depends on ports only; the handlers call one method each and emit what it returns.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import numpy as np

from services.monitoring import drift, metrics
from services.monitoring.adapters.store import AlertRow, DecisionRow, DriftRow, LabelingRow
from services.monitoring.config import MonitoringSettings
from services.monitoring.policy import PolicyConfig, PolicyState, decide
from services.monitoring.ports import Embedder, Repository
from services.monitoring.windows import FeedbackWindow, Observation, VersionWindow, tokens
from shared.claims import decode_batch
from shared.events import (
    AlertRaised,
    AuditRecorded,
    ClaimCheck,
    DriftDetected,
    Event,
    RecordsAnonymized,
    RecordsLabeled,
    TrainingRequested,
)
from shared.events.privacy import AnonymizedRecord

log = logging.getLogger(__name__)
INFERENCE_PREFIX = "inference."
FEEDBACK_DATASET = "feedback"
FEEDBACK_EVERY = 10


def utcnow() -> datetime:
    return datetime.now(UTC)


def _number(value: Any, default: float = 0.0) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


def observation(record: AnonymizedRecord, at: datetime, model: str) -> Observation:
    meta = record.metadata
    ttft = meta.get("ttft_ms")
    return Observation(
        at=at,
        model=str(meta.get("model") or model),
        version=str(meta.get("model_version") or "?"),
        prompt=str(meta.get("prompt") or ""),
        output=record.text,
        prompt_tokens=int(_number(meta.get("prompt_tokens"))),
        completion_tokens=int(_number(meta.get("completion_tokens"))),
        latency_ms=_number(meta.get("latency_ms")),
        ttft_ms=None if ttft is None else _number(ttft),
        error=bool(meta.get("error")) or meta.get("finish_reason") == "error",
        request_id=str(meta.get("request_id") or record.record_id.split(":", 1)[-1]),
    )


class MonitoringService:
    def __init__(
        self,
        settings: MonitoringSettings,
        embedder: Embedder | None,
        read_claim: Callable[[ClaimCheck], bytes] | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.settings = settings
        self.embedder = embedder
        self.read_claim = read_claim
        self.clock = clock
        self.policy = PolicyConfig(
            settings.cooldown_s, settings.min_new_labels, settings.require_approval
        )
        self.windows: dict[tuple[str, str], VersionWindow] = {}
        self.feedback: dict[str, FeedbackWindow] = {}
        self.responses: OrderedDict[str, str] = OrderedDict()  # request id -> model
        self.workers: dict[str, dict[str, Any]] = {}
        self.lock = threading.Lock()  # the API reads while a handler thread writes

    # -- inference records and feedback ---------------------------------------------------
    def records(self, event: RecordsAnonymized) -> list[AnonymizedRecord]:
        if event.claim is None or self.read_claim is None:
            return list(event.records)
        return decode_batch(self.read_claim(event.claim), AnonymizedRecord)

    def on_records_anonymized(self, event: RecordsAnonymized, repo: Repository) -> list[Event]:
        if event.dataset.startswith(INFERENCE_PREFIX):
            model = event.dataset.removeprefix(INFERENCE_PREFIX)
            out: list[Event] = []
            for record in self.records(event):
                out += self.observe(observation(record, event.occurred_at, model), event, repo)
            return out
        if event.dataset == FEEDBACK_DATASET:
            out = []
            for record in self.records(event):
                out += self.rate(record, event, repo)
            return out
        return []

    def window_for(self, model: str, version: str) -> VersionWindow:
        key = (model, version)
        if key not in self.windows:
            self.windows[key] = VersionWindow(model, version, self.settings.window_size)
            self.windows[key].history = type(self.windows[key].history)(
                maxlen=self.settings.history
            )
        return self.windows[key]

    def observe(self, obs: Observation, cause: Event, repo: Repository) -> list[Event]:
        metrics.observe(obs)
        with self.lock:
            self.responses[obs.request_id] = obs.model
            while len(self.responses) > 10_000:
                self.responses.popitem(last=False)
            window = self.window_for(obs.model, obs.version)
            full = window.add(obs)
            slo_due = window.seen % self.settings.window_size == 0
            recent = list(window.history)[-self.settings.window_size :]
        out: list[Event] = []
        if slo_due:
            out += self.check_slos(obs.model, obs.version, recent, cause, repo)
        if full is not None:
            out += self.evaluate(window, full, cause, repo)
        return out

    def rate(self, record: AnonymizedRecord, cause: Event, repo: Repository) -> list[Event]:
        rating = record.metadata.get("rating")
        if rating is None:
            return []
        response_id = str(record.metadata.get("response_id") or "")
        request_id = response_id.rsplit("-", 1)[-1]
        with self.lock:
            model = self.responses.get(request_id, "unknown")
            window = self.feedback.setdefault(model, FeedbackWindow(FEEDBACK_EVERY * 2))
            window.add(_number(rating))
            due = len(window.recent) % FEEDBACK_EVERY == 0
            mean, reference = window.mean, window.reference_mean
        if mean is not None:
            metrics.feedback_rating.set(mean, {"gen_ai.request.model": model})
        if not due or mean is None:
            return []
        out: list[Event] = []
        labels = {"model": model, "mean_rating": f"{mean:.3f}"}
        if mean < self.settings.slo_feedback_min:
            out += self.alert(
                repo, cause, "feedback_low", f"mean rating {mean:.2f} for {model}", labels
            )
        if reference is not None and reference - mean >= self.settings.feedback_drop:
            labels["reference_rating"] = f"{reference:.3f}"
            out += self.alert(
                repo, cause, "feedback_drop", f"rating fell {reference:.2f} -> {mean:.2f}", labels
            )
            if model != "unknown":
                out += self.trigger(repo, model, "feedback", cause)
        return out

    # -- drift -------------------------------------------------------------------------------
    def compare(
        self, reference: list[Observation], current: list[Observation], ref_vectors: Any = None
    ) -> list[Any]:
        s = self.settings

        def lengths(obs: list[Observation], prompt: bool) -> list[float]:
            if prompt:
                return [float(o.prompt_tokens or len(tokens(o.prompt))) for o in obs]
            return [float(o.completion_tokens or len(tokens(o.output))) for o in obs]

        results = [
            *drift.length_drift(
                "prompt_length",
                lengths(reference, True),
                lengths(current, True),
                s.psi_threshold,
                s.ks_alpha,
            ),
            *drift.length_drift(
                "output_length",
                lengths(reference, False),
                lengths(current, False),
                s.psi_threshold,
                s.ks_alpha,
            ),
            drift.distribution_drift(
                "prompt_tokens",
                [t for o in reference for t in tokens(o.prompt)],
                [t for o in current for t in tokens(o.prompt)],
                s.js_threshold,
            ),
            drift.distribution_drift(
                "predicted_label",
                [o.label for o in reference],
                [o.label for o in current],
                s.js_threshold,
            ),
        ]
        if self.embedder is not None and s.embeddings:
            ref = (
                ref_vectors
                if ref_vectors is not None
                else self.embedder.encode([o.prompt for o in reference])
            )
            cur = self.embedder.encode([o.prompt for o in current])
            results.append(
                drift.embedding_drift(
                    np.asarray(ref), np.asarray(cur), s.mmd_alpha, s.mmd_permutations
                )
            )
        return results

    def evaluate(
        self, window: VersionWindow, current: list[Observation], cause: Event, repo: Repository
    ) -> list[Event]:
        if (
            self.embedder is not None
            and window.reference_vectors is None
            and self.settings.embeddings
        ):
            window.reference_vectors = self.embedder.encode([o.prompt for o in window.reference])
        results = self.compare(window.reference, current, window.reference_vectors)
        label = f"{window.size} records (window {window.windows_evaluated})"
        out: list[Event] = []
        for result in results:
            evidence = json.loads(json.dumps(result.evidence, default=str))
            attrs = {"model": window.model, "feature": result.feature, "method": result.method}
            metrics.drift_score.set(result.score, attrs)
            metrics.drift_threshold.set(result.threshold, attrs)
            repo.add(
                DriftRow(
                    at=self.clock(),
                    model_name=window.model,
                    model_version=window.version,
                    window=window.windows_evaluated,
                    feature=result.feature,
                    method=result.method,
                    score=result.score,
                    threshold=result.threshold,
                    p_value=result.p_value,
                    drifted=result.drifted,
                    evidence=evidence,
                )
            )
            if result.drifted:
                out.append(
                    cause.caused(
                        DriftDetected,
                        model_name=window.model,
                        model_version=window.version,
                        feature=result.feature,
                        method=result.method,
                        score=result.score,
                        threshold=result.threshold,
                        p_value=result.p_value,
                        window=label,
                        evidence=evidence,
                    )
                )
        drifted = sorted({f"{r.feature}/{r.method}" for r in results if r.drifted})
        if drifted:
            out += self.alert(
                repo,
                cause,
                "drift",
                f"{window.model}@{window.version} drifted: {', '.join(drifted)}",
                {"model": window.model, "model_version": window.version},
                severity="warning",
            )
            out += self.trigger(repo, window.model, "drift", cause)
        return out

    # -- SLOs and alerts ---------------------------------------------------------------------
    def check_slos(
        self, model: str, version: str, recent: list[Observation], cause: Event, repo: Repository
    ) -> list[Event]:
        from services.monitoring.windows import summarize

        stats = summarize(recent)
        labels = {"model": model, "model_version": version}
        out: list[Event] = []
        p95 = stats["latency_p95_ms"]
        if p95 is not None and p95 > self.settings.slo_latency_p95_ms:
            out += self.alert(
                repo,
                cause,
                "latency_p95",
                f"{model}@{version} p95 latency {p95:.0f} ms",
                {**labels, "p95_ms": f"{p95:.1f}"},
            )
        if stats["error_rate"] > self.settings.slo_error_rate:
            out += self.alert(
                repo,
                cause,
                "error_rate",
                f"{model}@{version} error rate {stats['error_rate']:.1%}",
                {**labels, "error_rate": f"{stats['error_rate']:.4f}"},
                severity="critical",
            )
        return out

    def alert(
        self,
        repo: Repository,
        cause: Event | None,
        name: str,
        summary: str,
        labels: dict[str, str],
        *,
        severity: str = "warning",
    ) -> list[Event]:
        metrics.alerts.add(1, {"alertname": name, "severity": severity})
        repo.add(
            AlertRow(at=self.clock(), name=name, severity=severity, summary=summary, labels=labels)
        )
        fields = {"name": name, "severity": severity, "summary": summary, "labels": labels}
        return [cause.caused(AlertRaised, **fields) if cause else AlertRaised(**fields)]

    # -- the retraining policy ---------------------------------------------------------------
    def trigger(
        self,
        repo: Repository,
        model: str,
        trigger: str,
        cause: Event | None,
        approved_by: str | None = None,
    ) -> list[Event]:
        row = repo.model(model)
        state = PolicyState(
            model, row.last_fired_at, row.new_labels, row.dataset, row.dataset_version
        )
        now = self.clock()
        decision = decide(self.policy, state, trigger, now, approved=approved_by is not None)
        record = DecisionRow(
            at=now,
            model_name=model,
            trigger=trigger,
            outcome=decision.outcome.value,
            reason=decision.reason,
            approved_by=approved_by,
        )
        metrics.decisions.add(1, {"model": model, "outcome": decision.outcome.value})
        out: list[Event] = []
        if decision.fires:
            fields = {
                "model_name": model,
                "dataset": row.dataset,
                "dataset_version": row.dataset_version,
                "base_model": row.base_model or self.settings.base_model or model,
                "reason": trigger,
            }
            request = (
                cause.caused(TrainingRequested, **fields) if cause else TrainingRequested(**fields)
            )
            record.training_request_id = str(request.event_id)
            row.last_fired_at = now
            row.new_labels = 0
            out.append(request)
        repo.add(row)
        repo.add(record)
        details = {"trigger": trigger, "outcome": decision.outcome.value, "reason": decision.reason}
        audit = {
            "action": "retraining.decision",
            "actor": approved_by or "monitoring-policy",
            "allowed": decision.fires,
            "target": f"model:{model}",
            "details": details,
        }
        out.append(cause.caused(AuditRecorded, **audit) if cause else AuditRecorded(**audit))
        log.info("retraining decision", extra={"model": model, **details})
        return out

    def on_records_labeled(self, event: RecordsLabeled, repo: Repository) -> None:
        metrics.labels_total.add(event.count, {"dataset": event.dataset})
        agreements = [r.agreement for r in event.records if r.agreement is not None]
        repo.add(
            LabelingRow(
                at=event.occurred_at,
                dataset=event.dataset,
                count=event.count,
                agreement=float(np.mean(agreements)) if agreements else None,
            )
        )
        for row in repo.models():
            if row.dataset in (None, event.dataset):
                row.new_labels += event.count
                repo.add(row)
