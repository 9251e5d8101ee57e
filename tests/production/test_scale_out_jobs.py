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
        "LLMOPS_EMBEDDED_EPHEMERAL_BOOTSTRAP": f"127.0.0.1:{free_port()}",
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
            f"SELECT {key}, lease_owner FROM {table} WHERE lease_owner IS NOT NULL"
        ).fetchall()
    return {str(k): int(owner.split(":")[1]) for k, owner in rows}


def status_of(db: Path, table: str, key: str, value: str) -> str:
    with sqlite3.connect(db, timeout=30) as conn:
        row = conn.execute(
            f"SELECT status FROM {table} WHERE {key} = ?",
            (value,),
        ).fetchone()
    return str(row[0])


def kill(pid: int) -> None:
    """SIGKILL the process and the helpers it started (its own session: as a container dies)."""
    os.killpg(pid, signal.SIGKILL)
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
            if not pids <= set().union(*holders.values()):
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
        assert status_of(db, "ingestion_job", "request_id", job) == "running"  # half done

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


def publish(bootstrap: str, topic: Topic, events: list[Any], key: str) -> None:
    for event in events:
        asyncio.run(
            produce(
                bootstrap,
                topic.value,
                [event.to_bytes()],
                key=getattr(event, key).encode(),
                headers=[("event_type", event.EVENT_TYPE.encode())],
            )
        )


def test_two_training_processes_share_runs_and_take_over_a_killed_ones(data_dir: Path) -> None:
    """Real (tiny) training runs: the cheapest request that trains, checkpoints and resumes."""
    from services.training import synthetic
    from shared.events import DatasetVersioned, ModelTrained, TrainingRequested
    from shared.storage import ArtifactStore

    artifacts = data_dir / "artifacts"
    manifest, claim = synthetic.cut(ArtifactStore(str(artifacts)), "scale", synthetic.records())
    version = DatasetVersioned(
        dataset="scale",
        version=manifest.version,
        records=manifest.record_count,
        manifest=claim,
        labeled=True,
    )
    requests = [
        TrainingRequested(
            model_name=f"scale{i}",
            dataset="scale",
            dataset_version=manifest.version,
            base_model="tiny",
            hyperparameters={"max_steps": 40},
        )
        for i in range(4)
    ]
    db = data_dir / "training.db"
    with stack(
        data_dir,
        "training",
        LLMOPS_ARTIFACT_URL=str(artifacts),
        LLMOPS_TRAINING_PORT=str(free_port()),
        LLMOPS_TRAINING_CHECKPOINT_STEPS="5",  # a taken-over run resumes from a checkpoint
    ) as (bootstrap, processes):
        pids = {p["pid"] for p in processes.values()}
        publish(bootstrap, Topic.DATASET_VERSIONED, [version], "dataset")

        def version_seen() -> bool:
            with sqlite3.connect(db, timeout=30) as conn:
                return bool(conn.execute("SELECT count(*) FROM training_version").fetchone()[0])

        wait_until(version_seen, timeout=120, interval=0.5)
        publish(bootstrap, Topic.TRAINING_REQUESTED, requests, "model_name")

        # 1. both processes train runs; the holder of a run under way is killed
        holders: dict[str, set[int]] = {}

        def both_busy_and_one_mid_run() -> tuple[str, int] | None:
            for run, pid in lease_pids(db, "training_run", "run_id").items():
                holders.setdefault(run, set()).add(pid)
            if not pids <= set().union(*holders.values()):
                return None
            with sqlite3.connect(db, timeout=30) as conn:
                running = conn.execute(
                    "SELECT run_id, lease_owner FROM training_run "
                    "WHERE status = 'running' AND lease_owner IS NOT NULL"
                ).fetchall()
            for run, owner in running:
                if int(owner.split(":")[1]) in pids:
                    return str(run), int(owner.split(":")[1])
            return None

        run, victim = wait_until(both_busy_and_one_mid_run, timeout=400, interval=0.2)
        kill(victim)
        assert status_of(db, "training_run", "run_id", run) == "running"  # under way

        # 2. every request is trained, the killed one's run by another process
        wanted = {r.event_id for r in requests}

        def all_trained() -> list[ModelTrained]:
            done = [e for e in read_events(bootstrap, Topic.MODEL_TRAINED)]
            return done if {e.request_id for e in done} >= wanted else []

        trained = wait_until(all_trained, timeout=600, interval=3)
        with sqlite3.connect(db, timeout=30) as conn:
            statuses = dict(conn.execute("SELECT run_id, status FROM training_run").fetchall())
        final = lease_pids(db, "training_run", "run_id")

    # 3. once in effect: one run per request, one model per run (its event id is derived from
    # the run: a redelivery is the same event), every run completed
    assert set(statuses.values()) == {"completed"}, statuses
    assert len(statuses) == len(requests)
    by_request: dict[uuid.UUID, set[uuid.UUID]] = {}
    for model in trained:
        by_request.setdefault(model.request_id, set()).add(model.event_id)
    assert all(len(ids) == 1 for ids in by_request.values()), by_request
    assert final.get(run) != victim
    assert holders[run] >= {victim}
    assert len(set().union(*holders.values()) & pids) == 2


def test_two_evaluation_processes_share_versions_and_take_over_a_killed_ones(
    data_dir: Path,
) -> None:
    """Real scoring (transformers backend, the tiny model, a dozen examples): each queued
    version is evaluated by one process; the one killed mid-scoring is evaluated by the
    other; one ModelEvaluated per version (its ids are random: a second evaluation would
    show as a second id)."""
    from shared.datasets import cut_version
    from shared.events import ClaimCheck, DatasetVersioned, ModelEvaluated, ModelTrained
    from shared.modelkit import MODEL_DIR_MEDIA_TYPE, dir_digest, ensure_tiny_model
    from shared.storage import ArtifactStore
    from tests.evaluation import fakes, models

    artifacts = data_dir / "artifacts"
    manifest, claim = cut_version(
        ArtifactStore(str(artifacts)),
        "tickets",
        fakes.one_label_rows(),
        labeled=True,
        task="classification",
        splits={"test": 12},
    )
    version = DatasetVersioned(
        dataset="tickets",
        version=manifest.version,
        records=manifest.record_count,
        manifest=claim,
        labeled=True,
    )
    model = ensure_tiny_model(models.CACHE / "tiny-seed0")
    digest, size = dir_digest(model)
    artifact = ClaimCheck(uri=str(model), sha256=digest, size=size, media_type=MODEL_DIR_MEDIA_TYPE)
    trained = [
        ModelTrained(
            run_id=uuid.uuid4(),
            model_name=f"scale{i}",
            model_version="v1",
            artifact=artifact,
            dataset="tickets",
            dataset_version=manifest.version,
            metrics={"loss": 0.1},
        )
        for i in range(4)
    ]
    db = data_dir / "evaluation.db"
    with stack(
        data_dir,
        "evaluation",
        LLMOPS_ARTIFACT_URL=str(artifacts),
        LLMOPS_EVALUATION_PORT=str(free_port()),
        LLMOPS_EVALUATION_BACKEND="transformers",
        LLMOPS_EVALUATION_BOOTSTRAP_PATH=str(model),
        LLMOPS_EVALUATION_MAX_NEW_TOKENS="4",
        LLMOPS_EVALUATION_LOAD_TEST_REQUESTS="0",
        LLMOPS_EVALUATION_BOOTSTRAP_SAMPLES="100",
    ) as (bootstrap, processes):
        pids = {p["pid"] for p in processes.values()}
        publish(bootstrap, Topic.DATASET_VERSIONED, [version], "dataset")
        publish(bootstrap, Topic.MODEL_TRAINED, trained, "model_name")

        holders: dict[str, set[int]] = {}

        def both_busy_and_one_mid_scoring() -> tuple[str, int] | None:
            for name, pid in lease_pids(db, "eval_model_version", "name").items():
                holders.setdefault(name, set()).add(pid)
            if not pids <= set().union(*holders.values()):
                return None
            with sqlite3.connect(db, timeout=30) as conn:
                scoring = conn.execute(
                    "SELECT name, lease_owner FROM eval_model_version "
                    "WHERE status = 'evaluating' AND lease_owner IS NOT NULL"
                ).fetchall()
            for name, owner in scoring:
                if int(owner.split(":")[1]) in pids:
                    return str(name), int(owner.split(":")[1])
            return None

        name, victim = wait_until(both_busy_and_one_mid_scoring, timeout=400, interval=0.2)
        kill(victim)
        assert status_of(db, "eval_model_version", "name", name) == "evaluating"

        wanted = {m.model_name for m in trained}

        def all_evaluated() -> list[ModelEvaluated]:
            done = [e for e in read_events(bootstrap, Topic.MODEL_EVALUATED)]
            return done if {e.model_name for e in done} >= wanted else []

        evaluated = wait_until(all_evaluated, timeout=600, interval=3)
        with sqlite3.connect(db, timeout=30) as conn:
            statuses = dict(conn.execute("SELECT name, status FROM eval_model_version").fetchall())

    by_model: dict[str, set[uuid.UUID]] = {}
    for event in evaluated:
        by_model.setdefault(event.model_name, set()).add(event.event_id)
    assert {n: len(ids) for n, ids in by_model.items()} == dict.fromkeys(wanted, 1)
    assert all(e.gates.get("evaluated", True) for e in evaluated), [e.reasons for e in evaluated]
    assert not {statuses[n] for n in wanted} & {"queued", "evaluating", "failed"}, statuses
    assert holders[name] >= {victim}
    assert len(set().union(*holders.values()) & pids) == 2
