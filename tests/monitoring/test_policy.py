"""The retraining policy and the service around it: one retraining per cool-down, every
decision recorded and audited."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlmodel import Session

from services.monitoring.adapters.store import DecisionRow, DriftRow, SqlRepository
from services.monitoring.config import MonitoringSettings
from services.monitoring.policy import Outcome, PolicyConfig, PolicyState, decide
from services.monitoring.service import MonitoringService
from services.monitoring.traffic import inference_batch
from shared.events import AuditRecorded, DriftDetected, RecordsLabeled, TrainingRequested
from shared.events.labeling import LabeledRecord
from shared.storage.db import make_engine
from tests.monitoring.fakes import Clock, HashEmbedder

pytestmark = pytest.mark.unit
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _state(**overrides: object) -> PolicyState:
    fields: dict = {
        "model_name": "m",
        "last_fired_at": None,
        "new_labels": 50,
        "dataset": "d",
        "dataset_version": "v1",
    }
    return PolicyState(**{**fields, **overrides})


@pytest.mark.parametrize(
    ("config", "state", "approved", "expected"),
    [
        (PolicyConfig(60, 10, False), _state(), False, Outcome.FIRED),
        (
            PolicyConfig(60, 10, False),
            _state(last_fired_at=NOW - timedelta(seconds=30)),
            False,
            Outcome.COOLDOWN,
        ),
        (
            PolicyConfig(60, 10, False),
            _state(last_fired_at=NOW - timedelta(seconds=61)),
            False,
            Outcome.FIRED,
        ),
        (PolicyConfig(60, 100, False), _state(), False, Outcome.WAITING_LABELS),
        (PolicyConfig(60, 0, False), _state(dataset=None), False, Outcome.WAITING_DATASET),
        (PolicyConfig(60, 0, True), _state(), False, Outcome.AWAITING_APPROVAL),
        (PolicyConfig(60, 0, True), _state(), True, Outcome.FIRED),
    ],
)
def test_decide(config, state, approved, expected) -> None:
    decision = decide(config, state, "drift", NOW, approved=approved)
    assert decision.outcome is expected
    assert decision.reason


@pytest.fixture
def session(tmp_path: Path) -> Iterator[Session]:
    engine = make_engine(f"sqlite:///{tmp_path / 'monitoring.db'}")
    with Session(engine) as session:
        yield session
    engine.dispose()


def _service(clock: Clock, **settings: object) -> MonitoringService:
    cfg = MonitoringSettings(window_size=50, mmd_permutations=100, **settings)
    return MonitoringService(cfg, HashEmbedder(), clock=clock)


def _feed(service, repo, *, drifted: bool, n: int, seed: int) -> list:
    out = []
    for event in inference_batch("m", "v1", n, drifted=drifted, seed=seed):
        out += service.on_records_anonymized(event, repo)
    return out


def _know_dataset(service, repo, labels: int) -> None:
    row = repo.model("m")
    row.dataset, row.dataset_version, row.base_model = "tickets", "abc123", "base"
    repo.add(row)
    records = [
        LabeledRecord(record_id=f"r{i}", text="t", label="x", agreement=0.8) for i in range(labels)
    ]
    service.on_records_labeled(
        RecordsLabeled(dataset="tickets", project="p", records=records, count=labels), repo
    )


def test_injected_drift_requests_training_exactly_once_within_the_cooldown(session) -> None:
    clock = Clock()
    service = _service(clock, cooldown_s=3600, min_new_labels=5)
    repo = SqlRepository(session)
    _know_dataset(service, repo, labels=8)
    quiet = _feed(service, repo, drifted=False, n=100, seed=1)  # reference + one quiet window
    assert not [e for e in quiet if isinstance(e, DriftDetected | TrainingRequested)]
    out = []
    for seed in range(2, 6):  # four drifted windows inside the cool-down
        clock.advance(60)
        out += _feed(service, repo, drifted=True, n=50, seed=seed)
    session.commit()
    requests = [e for e in out if isinstance(e, TrainingRequested)]
    assert len(requests) == 1
    assert (requests[0].dataset, requests[0].dataset_version) == ("tickets", "abc123")
    assert requests[0].reason == "drift"
    assert {e.feature for e in out if isinstance(e, DriftDetected)} >= {"embeddings"}
    outcomes = [d.outcome for d in reversed(repo.recent(DecisionRow))]
    assert outcomes == ["fired"] + ["suppressed_cooldown"] * 3
    audits = [e for e in out if isinstance(e, AuditRecorded)]
    assert [a.details["outcome"] for a in audits] == outcomes
    assert len(repo.recent(DriftRow, 1000)) == 5 * 7  # every comparison is kept

    clock.advance(3600)  # after the cool-down, labels are needed again
    later = _feed(service, repo, drifted=True, n=50, seed=9)
    assert not [e for e in later if isinstance(e, TrainingRequested)]
    assert repo.recent(DecisionRow, 1)[0].outcome == "waiting_for_labels"


def test_approval_required_waits_then_fires(session) -> None:
    service = _service(Clock(), require_approval=True)
    repo = SqlRepository(session)
    _know_dataset(service, repo, labels=0)
    _feed(service, repo, drifted=False, n=50, seed=1)
    out = _feed(service, repo, drifted=True, n=50, seed=2)
    assert not [e for e in out if isinstance(e, TrainingRequested)]
    assert repo.recent(DecisionRow, 1)[0].outcome == "awaiting_approval"
    approved = service.trigger(repo, "m", "drift", None, approved_by="admin")
    assert [type(e).__name__ for e in approved] == ["TrainingRequested", "AuditRecorded"]
    assert approved[1].actor == "admin"


def test_slos_are_checked_once_per_window_even_when_history_is_full(session) -> None:
    service = _service(Clock(), history=100, slo_latency_p95_ms=1.0, embeddings=False)
    repo = SqlRepository(session)
    alerts = [
        e
        for e in _feed(service, repo, drifted=False, n=300, seed=1)
        if getattr(e, "name", "") == "latency_p95"
    ]
    assert len(alerts) == 300 // 50  # one per 50 records, though the history holds only 100
