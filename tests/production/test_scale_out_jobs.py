"""`llmops up --scale` for the services whose handlers store a request as a job that a
background runner works off (ingestion's jobs, training's runs, evaluation's queued
versions): two processes in one group share the requests and the job table; each job runs
in one process at a time (a lease, shared.storage.lease); one SIGKILLed mid-job, the other
takes the job over from its last checkpoint once the lease runs out; every output once in
effect."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from shared.events import IngestCompleted, IngestRequested, RecordsIngested, decode
from shared.events.ingest import SourceSpec
from shared.stack.supervisor import pid_alive
from shared.topics import Topic
from tests.integration.test_cli import llmops
from tests.support.stack import free_port, produce, read_topic, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]
LEASE_S = 8  # a dead process' job is taken over this long after its last renewal


@contextmanager
def stack(data_dir: Path, service: str, **extra: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """`llmops up --detach --only SERVICE --scale SERVICE=2`; (bootstrap, processes by label)."""
    bootstrap = f"127.0.0.1:{free_port()}"
    env = {
        "LLMOPS_DATA_DIR": str(data_dir),
        "LLMOPS_EMBEDDED_BOOTSTRAP": bootstrap,
        "LLMOPS_KAFKA_BOOTSTRAP": "",
        "LLMOPS_JOB_LEASE_S": str(LEASE_S),
        "LLMOPS_STARTUP_TIMEOUT_S": "500",
        **extra,
    }
    up = llmops(
        "up", "--detach", "--only", service, "--scale", f"{service}=2", env=env, timeout=600
    )  # fmt: skip
    assert up.returncode == 0, up.stdout + up.stderr
    try:
        state = json.loads((data_dir / "stack.json").read_text())
        processes = {p["label"]: p for p in state["processes"]}
        assert set(processes) == {service, f"{service}-2"}
        assert len({p["port"] for p in processes.values()}) == 2
        yield bootstrap, processes
    finally:
        down = llmops("down", env=env, timeout=120)
        assert down.returncode == 0, down.stderr


def lease_pids(db: Path, table: str, key: str) -> dict[str, int]:
    """Each job's lease holder, as the pid in its owner name (host:pid:random)."""
    with sqlite3.connect(db, timeout=30) as conn:
        rows = conn.execute(
            f"SELECT {key}, lease_owner FROM {table} WHERE lease_owner IS NOT NULL"  # noqa: S608
        ).fetchall()
    return {str(k): int(owner.split(":")[1]) for k, owner in rows}


def kill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not pid_alive(pid), timeout=30)


def read_events(bootstrap: str, topic: Topic) -> list[Any]:
    records = asyncio.run(read_topic(bootstrap, topic.value, count=10**6, timeout=3))
    return [decode(r.value) for r in records]


def test_two_ingestion_processes_share_jobs_and_take_over_a_killed_ones(data_dir: Path) -> None:
    from services.ingestion.synthetic import generate

    inbox = data_dir / "inbox"  # always an allowed source root
    inbox.mkdir()
    requests: list[IngestRequested] = []
    sizes: dict[uuid.UUID, int] = {}
    for i in range(8):
        docs = generate(300, seed=100 + i, near_per_cluster=(0, 1), exact_per_cluster=(0, 1))
        corpus = inbox / f"corpus{i}.jsonl"
        corpus.write_text("".join(json.dumps({"text": d.text}) + "\n" for d in docs))
        request = IngestRequested(dataset=f"scale{i}", sources=[SourceSpec(uri=str(corpus))])
        requests.append(request)
        sizes[request.event_id] = len(docs)
    db = data_dir / "ingestion.db"
    with stack(
        data_dir,
        "ingestion",
        LLMOPS_INGESTION_PORT=str(free_port()),
        LLMOPS_INGESTION_CHUNK_ROWS="25",  # many checkpoints per job: the kill lands mid-job
        LLMOPS_INGESTION_BATCH_RECORDS="20",
    ) as (bootstrap, processes):
        pids = {p["pid"] for p in processes.values()}
        for request in requests:
            asyncio.run(
                produce(
                    bootstrap,
                    Topic.INGEST_REQUESTED.value,
                    [request.to_bytes()],
                    key=request.dataset.encode(),
                    headers=[("event_type", request.EVENT_TYPE.encode())],
                )
            )

        # 1. both processes run jobs; then the holder of a job half done is killed
        holders: dict[str, set[int]] = {}

        def both_busy_and_one_mid_job() -> tuple[str, int] | None:
            for job, pid in lease_pids(db, "ingestion_job", "request_id").items():
                holders.setdefault(job, set()).add(pid)
            ran = set().union(*holders.values()) if holders else set()
            if not pids <= ran:
                return None
            with sqlite3.connect(db, timeout=30) as conn:
                running = conn.execute(
                    "SELECT request_id, lease_owner, position FROM ingestion_job "
                    "WHERE status = 'running' AND position > 0"
                ).fetchall()
            for job, owner, _position in running:
                if int(owner.split(":")[1]) in pids:
                    return str(job), int(owner.split(":")[1])
            return None

        job, victim = wait_until(both_busy_and_one_mid_job, timeout=300, interval=0.2)
        kill(victim)

        # 2. every request completes: the killed one's job by another process
        def all_completed() -> list[IngestCompleted]:
            done = [e for e in read_events(bootstrap, Topic.INGEST_COMPLETED)]
            ids = {e.request_id for e in done if isinstance(e, IngestCompleted)}
            return done if ids >= set(sizes) else []

        completed = wait_until(all_completed, timeout=600, interval=2)
        final = lease_pids(db, "ingestion_job", "request_id")
        assert final[job] != victim
        batches = [e for e in read_events(bootstrap, Topic.RECORDS_INGESTED)]

    # 3. once in effect: one report per request (redeliveries carry the same event id), every
    # batch index once, every kept record once, none lost
    reports: dict[uuid.UUID, dict[uuid.UUID, IngestCompleted]] = {}
    for report in completed:
        reports.setdefault(report.request_id, {})[report.event_id] = report
    by_event = {b.event_id: b for b in batches if isinstance(b, RecordsIngested)}
    for request_id, read in sizes.items():
        assert len(reports[request_id]) == 1, request_id
        (report,) = reports[request_id].values()
        assert report.failed is None
        assert report.read == read
        mine = [b for b in by_event.values() if b.request_id == request_id]
        assert sorted(b.batch_index for b in mine) == list(range(report.batches))
        ids = [r.record_id for b in mine for r in b.records]
        assert len(ids) == len(set(ids)) == report.emitted
        assert report.emitted == read - report.exact_duplicates - report.near_duplicates
        assert report.emitted > 0
    assert holders[job] >= {victim}
    assert len(set().union(*holders.values()) & pids) == 2
