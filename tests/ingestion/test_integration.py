"""Integration tier: the ingestion service as a real process on the real broker.

Proves the issue's "Done when": the CLI reports every bad line and delivers every good,
non-duplicate record; a version (cut from the records the anonymization service sends
back, so that service runs too, as a real process) shows its lineage; a killed service
resumes a request without losing or duplicating records.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from shared.datasets import iter_records, load_manifest
from shared.events import (
    DatasetVersioned,
    IngestCompleted,
    IngestRequested,
    RecordsIngested,
    decode,
)
from shared.events.ingest import SourceSpec
from shared.storage import ArtifactStore
from shared.topics import Topic
from tests.anonymization.scan import skip_history
from tests.ingestion.files import EXPECTED_ERRORS, EXPECTED_KEPT, write_bad_inputs
from tests.labeling.support import start_curator
from tests.support.stack import ServiceProcess, produce, read_topic, wait_until

pytestmark = pytest.mark.integration
LLMOPS = str(Path(sys.executable).parent / "llmops")
_ANONYMIZATION: list[ServiceProcess] = []


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Artifact and transit stores shared by the services (as under one `llmops up`)."""
    return tmp_path_factory.mktemp("stores")


def store_env(stores: Path) -> dict[str, str]:
    return {
        "LLMOPS_ARTIFACT_URL": str(stores / "artifacts"),
        "LLMOPS_TRANSIT_URL": str(stores / "transit"),
    }


@pytest.fixture(scope="module")
def anonymization(kafka: str, stores: Path) -> Any:
    """The anonymization service, whose RecordsAnonymized the versions are cut from."""
    env = {
        "LLMOPS_KAFKA_BOOTSTRAP": kafka,
        "LLMOPS_DATA_DIR": str(stores / "anonymization"),
        "LLMOPS_LOG_LEVEL": "WARNING",
        "LLMOPS_RETRY_BACKOFF_S": "0.05",
        "LLMOPS_ANONYMIZATION_API_PORT": "0",
        "LLMOPS_ANONYMIZATION_CONSUMER_GROUP": f"anonymization-{uuid.uuid4().hex[:8]}",
        **store_env(stores),
    }
    asyncio.run(skip_history(kafka, [env["LLMOPS_ANONYMIZATION_CONSUMER_GROUP"]]))
    process = ServiceProcess("services.anonymization", env, stores / "anonymization.log")
    _ANONYMIZATION.append(process.start(timeout=240))
    yield process
    process.stop()


@pytest.fixture(scope="module")
def labeling(kafka: str, stores: Path) -> Any:
    """The labeling service (the curator), which cuts the versions from the anonymized
    records and ingestion's report."""
    process = start_curator(
        kafka, stores / "labeling", stores / "labeling.log", **store_env(stores)
    )
    yield process
    process.stop()


def start_ingestion(env: dict[str, str], log: Path) -> ServiceProcess:
    """Start in fresh groups that skip what earlier tests left in the broker."""
    group = env["LLMOPS_INGESTION_CONSUMER_GROUP"]
    groups = [group, f"{group}-erasure"]
    asyncio.run(skip_history(env["LLMOPS_KAFKA_BOOTSTRAP"], groups))
    return ServiceProcess("services.ingestion", env, log).start(timeout=120)


def service_env(
    kafka: str, data_dir: Path, stores: Path | None = None, **extra: str
) -> dict[str, str]:
    # A group of its own per test: a member left behind by another test's process cannot
    # hold up this one's group join.
    return {
        "LLMOPS_KAFKA_BOOTSTRAP": kafka,
        "LLMOPS_DATA_DIR": str(data_dir),
        "LLMOPS_LOG_LEVEL": "WARNING",
        "LLMOPS_INGESTION_CONSUMER_GROUP": f"ingestion-{uuid.uuid4().hex[:8]}",
        **(store_env(stores) if stores is not None else {}),
        **extra,
    }


def cli(env: dict[str, str], *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [LLMOPS, *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def events_of(kafka: str, topic: Topic, request_id: uuid.UUID, *, at_least: int = 1) -> list[Any]:
    def fetch() -> list[Any]:
        records = asyncio.run(read_topic(kafka, topic.value, count=10**6, timeout=2))
        found = [decode(r.value) for r in records]
        got = [e for e in found if getattr(e, "request_id", None) == request_id]
        return got if len(got) >= at_least else []

    return wait_until(fetch, timeout=120, interval=0.5)  # type: ignore[no-any-return]


def records_by_event(batches: list[RecordsIngested]) -> dict[uuid.UUID, RecordsIngested]:
    return {b.event_id: b for b in batches}  # a redelivered batch has the same event id


def test_cli_ingest_reports_bad_lines_and_delivers_good_records(
    kafka: str,
    data_dir: Path,
    tmp_path: Path,
    stores: Path,
    anonymization: ServiceProcess,
    labeling: ServiceProcess,
) -> None:
    files = write_bad_inputs(tmp_path / "in")
    env = service_env(kafka, data_dir, stores, LLMOPS_INGESTION_BATCH_RECORDS="3")
    service = start_ingestion(env, tmp_path / "ingestion.log")
    try:
        paths = [str(files[k]) for k in ("mixed", "empty", "binary", "ragged", "missing")]
        result = cli(env, "ingest", *paths, "--dataset", "tickets", "--wait", "--json", "--version")
        assert result.returncode == 0, result.stderr + service.log_tail()
        *_, report_line, version_line = result.stdout.strip().splitlines()
        report, versioned = decode(report_line), decode(version_line)
        assert isinstance(report, IngestCompleted)
        assert isinstance(versioned, DatasetVersioned)
        assert report.dataset_version is None  # the version follows the report
        assert versioned.causation_id == report.request_id
        assert versioned.records == 7
        got = [(e.source, e.line, e.reason) for e in report.errors]
        for key, line, words in EXPECTED_ERRORS:
            assert any(
                s == str(files[key]) and ln == line and words in reason for s, ln, reason in got
            ), f"{key}:{line} ({words}) not reported in {got}"
        assert (report.read, report.emitted, report.malformed) == (17, 7, 8)
        assert report.exact_duplicates == 2
        assert report.error_count == len(EXPECTED_ERRORS)

        batches = records_by_event(
            events_of(kafka, Topic.RECORDS_INGESTED, report.request_id, at_least=report.batches)
        )
        ordered = sorted(batches.values(), key=lambda b: b.batch_index)
        assert [r.text for b in ordered for r in b.records] == EXPECTED_KEPT
        assert all(b.count <= 3 for b in ordered)

        listed = cli(env, "datasets", "list", "--json")
        assert listed.returncode == 0, listed.stderr
        versions = [json.loads(line) for line in listed.stdout.splitlines()]
        assert any(v["version"] == versioned.version for v in versions)
        shown = cli(env, "datasets", "show", f"tickets@{versioned.version}", "--json")
        assert shown.returncode == 0, shown.stderr
        manifest = json.loads(shown.stdout)
        assert manifest["record_count"] == 7
        lineage = {entry["record_id"]: entry for entry in manifest["lineage"]}
        first = ordered[0].records[0]
        assert lineage[first.record_id]["source"] == str(files["mixed"])
        assert lineage[first.record_id]["line"] == 1
        assert lineage[first.record_id]["request_id"] == str(report.request_id)
        second = ordered[0].records[1]  # line 10 repeats it: an exact duplicate in its cluster
        (dup,) = lineage[second.record_id]["duplicates"]
        assert (dup["status"], dup["line"]) == ("exact_duplicate", 10)
        table = cli(env, "datasets", "show", "tickets")
        assert table.returncode == 0
        assert "mixed.jsonl" in table.stdout.replace("\n", "").replace("│", "").replace(" ", "")
        artifacts = ArtifactStore(str(stores / "artifacts"))
        held = list(iter_records(artifacts, load_manifest(artifacts, versioned.manifest)))
        assert sorted(r["record_id"] for r in held) == sorted(lineage)
        assert all(
            set(r) <= {"record_id", "source_id", "text", "metadata", "entities"} for r in held
        )
        assert not (data_dir / "ingestion" / "spool").exists()
    finally:
        service.stop()


def test_demo_stage(
    kafka: str,
    data_dir: Path,
    tmp_path: Path,
    stores: Path,
    anonymization: ServiceProcess,
    labeling: ServiceProcess,
) -> None:
    from services.ingestion import demo
    from shared.cli.demo import DemoContext
    from shared.settings import ServiceSettings

    env = service_env(kafka, data_dir, stores)
    service = start_ingestion(env, tmp_path / "ingestion.log")
    try:
        settings = ServiceSettings(
            kafka_bootstrap=kafka, data_dir=data_dir, artifact_url=str(stores / "artifacts")
        )
        ctx = DemoContext(settings=settings, work_dir=tmp_path / "demo")
        demo.run(ctx)
    finally:
        service.stop()
    assert ctx.results["dataset"] == demo.DATASET
    assert ctx.results["ingested_records"] > 100
    assert ctx.results["dataset_version"]


def test_killed_service_resumes_without_losing_or_duplicating(
    kafka: str, data_dir: Path, tmp_path: Path
) -> None:
    from services.ingestion.synthetic import generate

    for process in _ANONYMIZATION:  # 3000 records to anonymize would only slow this down
        process.stop()

    # large enough that the kill lands mid-request: the bulk chunk writes do ~4,000 rows/s
    docs = generate(12000, seed=5, near_per_cluster=(0, 1), exact_per_cluster=(0, 1))
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"text": d.text}) + "\n" for d in docs))
    env = service_env(
        kafka, data_dir, LLMOPS_INGESTION_CHUNK_ROWS="100", LLMOPS_INGESTION_BATCH_RECORDS="50"
    )
    log = tmp_path / "ingestion.log"
    request = IngestRequested(dataset="restart", sources=[SourceSpec(uri=str(corpus))])
    service = start_ingestion(env, log)
    try:
        asyncio.run(
            produce(kafka, Topic.INGEST_REQUESTED.value, [request.to_bytes()], key=b"restart")
        )
        events_of(kafka, Topic.RECORDS_INGESTED, request.event_id, at_least=3)
    finally:
        service.kill()  # SIGKILL mid-request
    with sqlite3.connect(data_dir / "ingestion.db") as db:
        status, position = db.execute(
            "SELECT status, position FROM ingestion_job WHERE request_id = ?",
            (str(request.event_id),),
        ).fetchone()
    assert status == "running"
    assert 0 < position < len(docs), "the kill must land mid-request"
    service = ServiceProcess("services.ingestion", env, log).start(timeout=120)
    try:
        (report,) = events_of(kafka, Topic.INGEST_COMPLETED, request.event_id)
    finally:
        service.stop()
    batches = records_by_event(
        events_of(kafka, Topic.RECORDS_INGESTED, request.event_id, at_least=report.batches)
    )
    assert sorted(b.batch_index for b in batches.values()) == list(range(report.batches))
    ids = [r.record_id for b in batches.values() for r in b.records]
    assert len(ids) == len(set(ids)) == report.emitted
    assert report.read == len(docs)
    expected_kept = len(docs) - report.exact_duplicates - report.near_duplicates
    assert report.emitted == expected_kept
    clusters = {d.cluster for d in docs}
    assert abs(report.emitted - len(clusters)) <= len(clusters) * 0.02
