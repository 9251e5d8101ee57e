"""`llmops up --scale`: two processes of a consumer service in one group on the embedded
broker share the partitions; one killed, the other takes its partitions, nothing is lost."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer

from shared import events as ev
from shared.events.ingest import Record
from shared.events.privacy import AnonymizedRecord
from shared.stack.supervisor import parse_scale
from shared.topics import Topic
from tests.integration.test_cli import llmops
from tests.support.stack import free_port, produce, read_topic, wait_until

pytestmark = pytest.mark.integration


def _batch(dataset: str, request_id: uuid.UUID) -> ev.RecordsIngested:
    text = f"Customer {dataset} wrote from {dataset}@example.com about an unpaid invoice."
    record = Record(record_id=uuid.uuid4().hex[:16], text=text, source="scale-test")
    return ev.RecordsIngested(
        dataset=dataset, request_id=request_id, batch_index=0, records=[record], count=1
    )


async def _publish(bootstrap: str, batches: list[ev.RecordsIngested]) -> None:
    for batch in batches:
        await produce(
            bootstrap,
            Topic.RECORDS_INGESTED.value,
            [batch.to_bytes()],
            key=batch.dataset.encode(),
            headers=[("event_type", batch.EVENT_TYPE.encode())],
        )


async def _outputs(bootstrap: str, expected: set[str], timeout: float) -> list[dict[str, Any]]:
    """Every RecordsAnonymized until each expected request id is there (or the timeout)."""
    consumer = AIOKafkaConsumer(
        Topic.RECORDS_ANONYMIZED.value,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    await consumer.start()
    seen: list[dict[str, Any]] = []
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while not expected <= {s["request_id"] for s in seen}:
            if asyncio.get_running_loop().time() > deadline:
                break
            for part in (await consumer.getmany(timeout_ms=1000)).values():
                seen += [json.loads(r.value) for r in part]
    finally:
        await consumer.stop()
    return seen


def _received(port: int) -> float:
    """Messages of records.ingested this process consumed (its Prometheus counter)."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("messaging_client_consumed_messages_total")
        and Topic.RECORDS_INGESTED.value in line
    )


@pytest.mark.unit
def test_parse_scale_checks_names_and_counts() -> None:
    from shared.plugins import processes

    procs = processes()
    assert parse_scale("serving-worker=2, anonymization=3", procs) == {
        "serving-worker": 2,
        "anonymization": 3,
    }
    assert parse_scale(None, procs) == {}
    for bad in ("anonymization", "anonymization=0", "anonymization=x", "nope=2"):
        with pytest.raises(ValueError, match="scale"):
            parse_scale(bad, procs)


@pytest.mark.unit
def test_parse_scale_refuses_a_second_monitoring_or_audit_process() -> None:
    from shared.plugins import processes

    procs = processes()
    assert parse_scale("monitoring=1,audit=1", procs) == {"monitoring": 1, "audit": 1}
    with pytest.raises(ValueError, match="monitoring runs as one process only: its windows"):
        parse_scale("monitoring=2", procs)
    with pytest.raises(ValueError, match="audit runs as one process only: one writer"):
        parse_scale("ingestion=2,audit=2", procs)


@pytest.mark.unit
def test_each_extra_labeling_process_reads_its_own_reply_topic(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`up --scale labeling=3`: the model's suggestions come back on one reply topic per
    process (a process forgets its topic's unanswered questions at start: a shared topic
    would lose the other's), each a name the ACLs grant labeling."""
    import io
    import re
    import subprocess

    from rich.console import Console

    from services.labeling.plugin import PLUGIN
    from shared.settings import ServiceSettings
    from shared.stack.supervisor import Supervisor
    from shared.wire import REPLY_ID_PATTERN

    envs: dict[str, dict[str, str]] = {}

    class Started:
        pid = 0
        stdout = io.BytesIO()

    def popen(_args: list[str], *, env: dict[str, str], **_kw: Any) -> Started:
        envs[env["LLMOPS_LABELING_PORT"]] = env
        return Started()

    monkeypatch.setattr(subprocess, "Popen", popen)
    monkeypatch.delenv("LLMOPS_LABELING_SUGGEST_REPLY_ID", raising=False)
    settings = ServiceSettings(data_dir=data_dir)
    supervisor = Supervisor(
        settings, list(PLUGIN.processes), console=Console(file=io.StringIO()), scale={"labeling": 3}
    )
    supervisor.log_dir.mkdir(parents=True)
    for child in supervisor.children:
        supervisor.spawn(child)
    ids = [envs[str(c.port)].get("LLMOPS_LABELING_SUGGEST_REPLY_ID") for c in supervisor.children]
    assert ids == [None, "labeling-2", "labeling-3"]  # the first keeps the default, `labeling`
    assert all(re.fullmatch(REPLY_ID_PATTERN, i) for i in ids[1:] if i)
    assert all(f"llmops.inference.replies.{i}".startswith(PLUGIN.topic_prefixes) for i in ids if i)


@pytest.mark.integration
def test_up_refuses_to_scale_a_singleton(data_dir: Path) -> None:
    """Before anything starts: the message names the process and why it is single."""
    env = {
        "LLMOPS_DATA_DIR": str(data_dir),
        "LLMOPS_EMBEDDED_BOOTSTRAP": f"127.0.0.1:{free_port()}",
        "LLMOPS_EMBEDDED_EPHEMERAL_BOOTSTRAP": f"127.0.0.1:{free_port()}",
    }
    up = llmops("up", "--detach", "--scale", "monitoring=2", env=env, timeout=120)
    said = " ".join((up.stdout + up.stderr).split())  # the console wraps long lines
    assert up.returncode == 2, said
    assert "monitoring runs as one process only" in said
    assert "in memory per process" in said
    assert not (data_dir / "stack.json").exists()


@pytest.mark.slow
def test_two_anonymization_processes_share_the_work_and_take_over(data_dir: Path) -> None:
    bootstrap = f"127.0.0.1:{free_port()}"
    env = {
        "LLMOPS_DATA_DIR": str(data_dir),
        "LLMOPS_EMBEDDED_BOOTSTRAP": bootstrap,
        "LLMOPS_EMBEDDED_EPHEMERAL_BOOTSTRAP": f"127.0.0.1:{free_port()}",
        "LLMOPS_KAFKA_BOOTSTRAP": "",
        "LLMOPS_ANONYMIZATION_PORT": str(free_port()),
        "LLMOPS_ANONYMIZATION_API_PORT": str(free_port()),
        "LLMOPS_STARTUP_TIMEOUT_S": "500",  # Presidio loads slowly on a busy 2-core machine
    }
    up = llmops(
        "up", "--detach", "--only", "anonymization", "--scale", "anonymization=2",
        env=env, timeout=600,
    )  # fmt: skip
    assert up.returncode == 0, up.stdout + up.stderr
    try:
        state = json.loads((data_dir / "stack.json").read_text())
        replicas = {p["label"]: p for p in state["processes"]}
        assert set(replicas) == {"anonymization", "anonymization-2"}
        ports = [p["port"] for p in replicas.values()]
        assert len(set(ports)) == 2

        # 1. work is shared: 12 datasets (keys) over 6 partitions, two members of one group
        first = [_batch(f"scale{i}", uuid.uuid4()) for i in range(12)]
        asyncio.run(_publish(bootstrap, first))
        expected = {str(b.request_id) for b in first}
        out = asyncio.run(_outputs(bootstrap, expected, timeout=240))
        assert expected <= {o["request_id"] for o in out}
        assert all(_received(port) > 0 for port in ports), [_received(p) for p in ports]

        # 2. one is killed: the other takes its partitions over, nothing is lost
        victim = replicas["anonymization-2"]["pid"]
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: not _alive(victim), timeout=30)
        second = [_batch(f"scale{i}", uuid.uuid4()) for i in range(12)]
        asyncio.run(_publish(bootstrap, second))
        expected |= {str(b.request_id) for b in second}
        out = asyncio.run(_outputs(bootstrap, expected, timeout=300))
        produced = [o["request_id"] for o in out]
        assert expected <= set(produced), expected - set(produced)
        # once in effect: a redelivered batch yields the same output, never a different one
        by_request: dict[str, set[str]] = {}
        for o in out:
            texts = json.dumps([r["text"] for r in o["records"]], sort_keys=True)
            by_request.setdefault(o["request_id"], set()).add(texts)
        assert all(len(v) == 1 for v in by_request.values())
        assert not any("@example.com" in t for v in by_request.values() for t in v)
    finally:
        down = llmops("down", env=env, timeout=120)
    assert down.returncode == 0, down.stderr


def _alive(pid: int) -> bool:
    from shared.stack.supervisor import pid_alive

    return pid_alive(pid)


def _consumed(port: int, topic: Topic) -> float:
    """Messages of ``topic`` this process consumed (its Prometheus counter)."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("messaging_client_consumed_messages_total") and topic.value in line
    )


def _ingest_flow(dataset: str) -> tuple[ev.IngestRequested, list[ev.Event]]:
    """What labeling hears of one ingest request cut as a version: the request, its two
    anonymized batches, the report; the version is cut when the last of them arrives."""
    request = ev.IngestRequested(dataset=dataset, cut_version=True)
    batches = [
        ev.RecordsAnonymized(
            dataset=dataset,
            request_id=request.event_id,
            batch_index=index,
            records=[
                AnonymizedRecord(record_id=f"{dataset}-{index}-{n}", text=f"ticket {n} <PERSON_1>")
                for n in range(3)
            ],
            count=3,
        )
        for index in range(2)
    ]
    report = ev.IngestCompleted(dataset=dataset, request_id=request.event_id, read=6, emitted=6)
    return request, [request, *batches, report]


def _publish_events(bootstrap: str, events: list[ev.Event]) -> None:
    async def send() -> None:
        for event in events:
            await produce(
                bootstrap,
                Topic.for_event(type(event)).value,
                [event.to_bytes()],
                key=event.dataset.encode(),  # type: ignore[attr-defined]
                headers=[("event_type", event.EVENT_TYPE.encode())],
            )

    asyncio.run(send())


def _versions(bootstrap: str, wanted: set[str], timeout: float) -> list[ev.DatasetVersioned]:
    """Every DatasetVersioned once each wanted dataset (one request each) has one."""

    def fetch() -> list[ev.DatasetVersioned]:
        records = asyncio.run(
            read_topic(bootstrap, Topic.DATASET_VERSIONED.value, count=10**6, timeout=3)
        )
        found = [ev.decode(r.value) for r in records]
        cut = [e for e in found if isinstance(e, ev.DatasetVersioned)]
        return cut if {e.dataset for e in cut} >= wanted else []

    return wait_until(fetch, timeout=timeout, interval=2)  # type: ignore[no-any-return]


@pytest.mark.slow
def test_two_labeling_processes_share_records_and_cut_each_version_once(data_dir: Path) -> None:
    """Records become rows once, and each ingest request's unlabeled version is cut once, by
    whichever process hears the last part of it, while two processes share the partitions;
    one SIGKILLed with a second round in flight, the other finishes it."""
    port = free_port()
    bootstrap = f"127.0.0.1:{free_port()}"
    env = {
        "LLMOPS_DATA_DIR": str(data_dir),
        "LLMOPS_EMBEDDED_BOOTSTRAP": bootstrap,
        "LLMOPS_EMBEDDED_EPHEMERAL_BOOTSTRAP": f"127.0.0.1:{free_port()}",
        "LLMOPS_KAFKA_BOOTSTRAP": "",
        "LLMOPS_LABELING_PORT": str(port),
        "LLMOPS_STARTUP_TIMEOUT_S": "500",
    }
    up = llmops(
        "up", "--detach", "--only", "labeling", "--scale", "labeling=2", env=env, timeout=600
    )  # fmt: skip
    assert up.returncode == 0, up.stdout + up.stderr
    try:
        state = json.loads((data_dir / "stack.json").read_text())
        replicas = {p["label"]: p for p in state["processes"]}
        assert set(replicas) == {"labeling", "labeling-2"}
        ports = [p["port"] for p in replicas.values()]

        first = [_ingest_flow(f"scale{i}") for i in range(12)]
        _publish_events(bootstrap, [e for _, flow in first for e in flow])
        wanted = {r.dataset for r, _ in first}
        _versions(bootstrap, wanted, timeout=300)
        consumed = [_consumed(p, Topic.RECORDS_ANONYMIZED) for p in ports]
        assert all(c > 0 for c in consumed), consumed

        os.killpg(replicas["labeling-2"]["pid"], signal.SIGKILL)
        second = [_ingest_flow(f"again{i}") for i in range(12)]
        _publish_events(bootstrap, [e for _, flow in second for e in flow])
        wanted |= {r.dataset for r, _ in second}
        versions = _versions(bootstrap, wanted, timeout=400)
    finally:
        down = llmops("down", env=env, timeout=120)
    assert down.returncode == 0, down.stderr
    # once in effect: one version per request (a second cut would be a second event id),
    # each with all six records; every record kept once, none lost
    by_dataset: dict[str, set[uuid.UUID]] = {}
    for version in versions:
        by_dataset.setdefault(version.dataset, set()).add(version.event_id)
    assert {d: len(ids) for d, ids in by_dataset.items()} == dict.fromkeys(wanted, 1)
    assert all(v.records == 6 for v in versions)
    with sqlite3.connect(data_dir / "labeling.db") as db:
        (held,) = db.execute("SELECT count(*) FROM labeling_record").fetchone()
    assert held == len(wanted) * 6
