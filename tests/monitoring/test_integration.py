"""The service as a real process on the real broker: a drifted burst is detected with real
MiniLM embeddings, alerts are raised, retraining is requested once, the chain is traceable."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import httpx
import pytest

from shared.events import AuditRecorded, DriftDetected, EventDecodeError, TrainingRequested, decode
from shared.topics import Topic
from tests.monitoring.conftest import ADMIN_KEY, AUTH, Loaded
from tests.support.stack import ROOT, read_topic, wait_until

pytestmark = pytest.mark.integration


def _events(loaded: Loaded, topic: Topic) -> list:
    """This run's events on a topic the session's broker shares with other tests (some of
    which publish garbage on purpose, e.g. the audit service's dead-letter test)."""
    records = asyncio.run(read_topic(loaded.bootstrap, topic.value, count=10_000, timeout=2))
    events = []
    for record in records:
        try:
            event = decode(record.value)
        except EventDecodeError:
            continue
        if event.correlation_id == loaded.correlation_id:
            events.append(event)
    return events


def test_drifted_burst_detected_alerted_and_retraining_requested_once(loaded: Loaded) -> None:
    decisions = httpx.get(f"{loaded.url}/api/decisions", headers=AUTH).json()
    assert [d["outcome"] for d in reversed(decisions)] == ["fired", "suppressed_cooldown"]
    requests = _events(loaded, Topic.TRAINING_REQUESTED)
    assert len(requests) == 1
    request = requests[0]
    assert isinstance(request, TrainingRequested)
    assert (request.model_name, request.dataset, request.dataset_version) == (
        "tickets-clf",
        "tickets",
        "ds1",
    )
    assert request.reason == "drift"
    drifts = [e for e in _events(loaded, Topic.DRIFT_DETECTED) if isinstance(e, DriftDetected)]
    assert {"embeddings", "prompt_tokens", "prompt_length"} <= {d.feature for d in drifts}
    mmd = next(d for d in drifts if d.method == "mmd")
    assert mmd.p_value is not None
    assert mmd.p_value < mmd.threshold
    assert mmd.evidence["dimensions"] == 384  # the real all-MiniLM-L6-v2
    audits = [e for e in _events(loaded, Topic.AUDIT_RECORDED) if isinstance(e, AuditRecorded)]
    assert sorted(a.details["outcome"] for a in audits) == ["fired", "suppressed_cooldown"]
    alerts = httpx.get(f"{loaded.url}/api/alerts", headers=AUTH).json()
    assert any(a["name"] == "drift" for a in alerts)


def test_quiet_window_raised_nothing(loaded: Loaded) -> None:
    drift = httpx.get(f"{loaded.url}/api/drift?limit=1000", headers=AUTH).json()
    first_window = [r for r in drift if r["window"] == 1]
    assert len(first_window) == 7
    assert not [r for r in first_window if r["drifted"]]


def test_status_api_and_cli(loaded: Loaded) -> None:
    status = httpx.get(f"{loaded.url}/api/status", headers=AUTH).json()
    window = status["windows"]["tickets-clf@v1"]
    assert window["records"] >= 160  # (the Prometheus test adds 10 when it runs first)
    assert window["latency_p95_ms"] > 0
    assert window["tokens_per_s"] > 0
    env = {**os.environ, **loaded.env, "LLMOPS_MONITORING_PORT": str(loaded.process.port)}
    cli = [sys.executable, "-m", "shared.cli.main"]
    shown = subprocess.run(
        [*cli, "monitor", "decisions"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "suppressed_cooldown" in shown.stdout


def test_trace_prints_the_loop_run_in_causation_order(loaded: Loaded) -> None:
    env = {**os.environ, **loaded.env}
    cli = [sys.executable, "-m", "shared.cli.main"]
    done = subprocess.run(
        [*cli, "trace", str(loaded.correlation_id)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    lines = done.stdout.splitlines()
    assert any("llmops.model.trained" in line for line in lines)
    request = next(line for line in lines if "llmops.training.requested" in line)
    # TrainingRequested is caused by a drifted record: it is indented under it
    assert request.index("llmops.training") > lines[0].index("llmops.")
    rows = [
        json.loads(x)
        for x in subprocess.run(
            [*cli, "trace", str(loaded.correlation_id), "--json"],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        ).stdout.splitlines()
    ]
    assert {r["event_type"] for r in rows} >= {
        "llmops.model.trained",
        "llmops.records.anonymized",
        "llmops.drift.detected",
        "llmops.alert.raised",
        "llmops.training.requested",
        "llmops.audit.recorded",
    }


def test_traces_continue_from_the_publisher_into_the_monitoring_process(loaded: Loaded) -> None:
    spans_file = loaded.data_dir / "spans.jsonl"
    trace_ids = {t for t, _ in loaded.publish_spans}
    publish_ids = {s for _, s in loaded.publish_spans}

    def ours(span: dict) -> bool:  # in the publisher's traces, or a relay span linked to them
        return span["trace_id"] in trace_ids or any(
            link["trace_id"] in trace_ids for link in span.get("links", ())
        )

    def read() -> list[dict] | None:
        spans = [s for line in spans_file.read_text().splitlines() if ours(s := json.loads(line))]
        return spans if any(s["kind"] == "PRODUCER" for s in spans) else None

    spans = wait_until(read, timeout=20)
    consumers = [s for s in spans if s["kind"] == "CONSUMER" and s["trace_id"] in trace_ids]
    assert consumers
    assert all(s["service"] == "monitoring" for s in consumers)
    consumer_ids = {s["span_id"] for s in consumers}
    # the relayed DriftDetected/TrainingRequested publishes stay in the publisher's trace: each
    # record carries its emitting handler's span as parent, and the relay's producer span (one
    # per drain, a root of its own) links to those handler spans
    producers = [s for s in spans if s["kind"] == "PRODUCER"]
    assert producers
    assert all({link["span_id"] for link in s["links"]} & consumer_ids for s in producers)
    parents = {s["parent_span_id"] for s in consumers}
    assert parents & publish_ids  # children of the test process' publish spans
    # and the rest are children of monitoring's own handler spans (it reads back the
    # TrainingRequested it emitted, to learn the base model)
    assert parents <= publish_ids | consumer_ids


def test_demo_stage_shows_drift_alert_and_decision(loaded: Loaded, monkeypatch, tmp_path) -> None:
    from services.monitoring import demo
    from shared.cli.demo import DemoContext
    from shared.settings import ServiceSettings

    monkeypatch.setenv("LLMOPS_MONITORING_PORT", str(loaded.process.port))
    said: list[str] = []
    settings = ServiceSettings(kafka_bootstrap=loaded.bootstrap, admin_key=ADMIN_KEY)
    ctx = DemoContext(settings=settings, work_dir=tmp_path)
    monkeypatch.setattr(ctx, "say", said.append)
    demo.run(ctx)  # no serving result: the stage publishes the anonymized records itself
    text = "\n".join(said)
    assert "drift: embeddings mmd" in text
    assert "alert: demo-drift@v1 drifted" in text
    assert "retraining decision" in text
    assert ctx.results["monitoring"]["decision"] == "waiting_for_labels"  # none labeled for it
    assert "/dashboards/drift" in text
