"""The service as a real process on the real broker: planted PII never leaves the ingest hop.

The ingestion and labeling services run beside it (same data dir, as under `llmops up`): a
file of planted PII is ingested with a version requested (labeling cuts it), in batches
large enough to travel by claim check through the transit store.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from shared.events import (
    DatasetVersioned,
    InferenceCompleted,
    IngestCompleted,
    RecordsIngested,
    decode,
)
from shared.events.ingest import Record
from shared.topics import Topic
from tests.anonymization.corpus import generate
from tests.anonymization.scan import (
    events_matching,
    file_blobs,
    search,
    skip_history,
    topic_bytes,
)
from tests.labeling.support import start_curator
from tests.support.stack import ROOT, ServiceProcess, free_port, produce

pytestmark = pytest.mark.integration

ADMIN_KEY = "test-admin-key-0123456789"
RAW_HOPS = {
    Topic.RECORDS_INGESTED,
    Topic.INGEST_REQUESTED,
    Topic.INFERENCE_REQUESTED,
    Topic.INFERENCE_COMPLETED,
}


@pytest.fixture(scope="module")
def service_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("anonymization")


@pytest.fixture(scope="module")
def service(kafka, service_dir):
    """One service process for the module (starting spaCy twice costs a minute on 2 cores)."""
    data_dir = service_dir
    env = {
        "LLMOPS_KAFKA_BOOTSTRAP": kafka,
        "LLMOPS_DATA_DIR": str(data_dir),
        "LLMOPS_ANONYMIZATION_API_PORT": str(free_port()),
        "LLMOPS_ADMIN_KEY": ADMIN_KEY,
        "LLMOPS_RETRY_BACKOFF_S": "0.05",
        "LLMOPS_ANONYMIZATION_CONSUMER_GROUP": f"anonymization-{uuid.uuid4().hex[:8]}",
    }
    asyncio.run(skip_history(kafka, [env["LLMOPS_ANONYMIZATION_CONSUMER_GROUP"]]))
    process = ServiceProcess("services.anonymization", env, data_dir / "logs" / "anon.log")
    process.start(timeout=240)
    yield process, env
    process.stop()


@pytest.fixture(scope="module")
def ingestion(kafka, service_dir):
    group = f"ingestion-{uuid.uuid4().hex[:8]}"
    asyncio.run(skip_history(kafka, [group, f"{group}-erasure"]))
    env = {
        "LLMOPS_KAFKA_BOOTSTRAP": kafka,
        "LLMOPS_DATA_DIR": str(service_dir),
        "LLMOPS_INGESTION_CONSUMER_GROUP": group,
        "LLMOPS_INGESTION_BATCH_RECORDS": "10",
        "LLMOPS_INGESTION_CLAIM_BYTES": "500",  # every batch goes by claim check
    }
    process = ServiceProcess("services.ingestion", env, service_dir / "logs" / "ingestion.log")
    process.start(timeout=120)
    yield process
    process.stop()


@pytest.fixture(scope="module")
def labeling(kafka, service_dir):
    """The curator, which cuts the version of the ingest request (anonymized text only)."""
    process = start_curator(kafka, service_dir, service_dir / "logs" / "labeling.log")
    yield process
    process.stop()


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shared.cli.main", *args],
        cwd=ROOT,
        env={**process_env(), **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def process_env() -> dict[str, str]:
    import os

    return {**os.environ, "PYTHONPATH": str(ROOT)}


def ingest_planted_file(env: dict[str, str], kafka: str, source: Path) -> DatasetVersioned:
    """`llmops ingest --version --wait` of planted PII; the raw batches go through transit."""
    done = cli(
        env,
        "ingest",
        str(source),
        "--dataset",
        "planted-files",
        "--meta",
        "note",
        "--version",
        "--wait",
        "--json",
    )
    assert done.returncode == 0, done.stderr
    *_, report_line, version_line = done.stdout.strip().splitlines()
    report, versioned = decode(report_line), decode(version_line)
    assert isinstance(report, IngestCompleted)
    assert isinstance(versioned, DatasetVersioned)
    assert versioned.causation_id == report.request_id
    assert versioned.records == report.emitted > 0
    batches = asyncio.run(
        events_matching(
            kafka,
            Topic.RECORDS_INGESTED.value,
            lambda e: e.request_id == report.request_id,
            report.batches,
            timeout=30,
        )
    )
    assert len(batches) == report.batches > 1
    assert all(b.claim is not None and b.records == [] for b in batches)
    return versioned  # type: ignore[no-any-return]


def test_planted_pii_never_leaves_the_ingest_hop(
    kafka, service_dir: Path, service, ingestion, labeling, tmp_path: Path
):
    data_dir = service_dir
    _process, env = service
    docs = [d for d in generate(60, seed=5, clean_share=0.0)]
    planted = sorted({value for doc in docs for value in doc.values()})
    source = tmp_path / "planted.jsonl"  # outside the scanned data dir: it is the raw input
    source.write_text(
        "".join(json.dumps({"text": d.text, "note": d.text[:40]}) + "\n" for d in docs)
    )
    versioned = ingest_planted_file(env, kafka, source)
    assert search({"source": source.read_bytes()}, planted)  # the scanner sees raw input
    records = [
        Record(record_id=f"p{i}", text=doc.text, metadata={"note": doc.text[:40]})
        for i, doc in enumerate(docs)
    ]
    batches = [
        RecordsIngested(
            dataset="planted",
            request_id=uuid.uuid4(),
            batch_index=i,
            records=records[i * 30 : (i + 1) * 30],
            count=30,
        )
        for i in range(2)
    ]
    inference = InferenceCompleted(
        request_id="req-9",
        model="tiny",
        model_version="1",
        prompt=docs[0].text,
        text=f"Sure, {docs[1].text}",
    )
    asyncio.run(produce(kafka, Topic.RECORDS_INGESTED.value, [b.to_bytes() for b in batches]))
    asyncio.run(produce(kafka, Topic.INFERENCE_COMPLETED.value, [inference.to_bytes()]))
    mine = {"planted", "inference.tiny"}
    events = asyncio.run(
        events_matching(
            kafka, Topic.RECORDS_ANONYMIZED.value, lambda e: e.dataset in mine, 3, timeout=120
        )
    )
    assert sorted(e.dataset for e in events) == ["inference.tiny", "planted", "planted"]
    assert sum(e.count for e in events) == 61

    # erasure of one subject, through the CLI, aggregated report
    email_doc = next(i for i, d in enumerate(docs) if d.values(("EMAIL_ADDRESS",)))
    email = docs[email_doc].values(("EMAIL_ADDRESS",))[0]
    done = cli(env, "erase", "--subject", email.upper(), "--wait", "--json", "--others", "1")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["found"]
    assert f"p{email_doc}" in report["records"]
    assert report["services"]["anonymization"]["removed"]["subject_keys"] == 1
    nobody = cli(env, "erase", "--subject", "nobody@nowhere.test", "--wait", "--others", "0.5")
    assert nobody.returncode == 0
    assert "nothing held" in nobody.stdout

    # de-anonymization: admin only, audited, impossible once erased
    api = f"http://127.0.0.1:{env['LLMOPS_ANONYMIZATION_API_PORT']}/v1/deanonymize"
    kept = next(f"p{i}" for i in range(len(docs)) if f"p{i}" not in report["records"])
    denied = httpx.post(api, json={"record_id": kept}, headers={"X-API-Key": "wrong"})
    assert denied.status_code == 401  # not a key of the registry
    restored = httpx.post(api, json={"record_id": kept}, headers={"X-API-Key": ADMIN_KEY})
    assert restored.status_code == 200
    assert restored.json()["text"] == docs[int(kept[1:])].text
    gone = httpx.post(api, json={"record_id": f"p{email_doc}"}, headers={"X-API-Key": ADMIN_KEY})
    assert gone.status_code == 410
    by_cli = cli(env, "deanonymize", "--record", kept, "--json", "--reason", "test")
    assert by_cli.returncode == 0, by_cli.stderr
    assert json.loads(by_cli.stdout)["text"] == docs[int(kept[1:])].text
    refused = cli({**env, "LLMOPS_ADMIN_KEY": "not-the-admin"}, "deanonymize", "--record", kept)
    assert refused.returncode == 2
    assert "admin role" in refused.stderr
    targets = {f"record:{kept}", f"record:p{email_doc}"}
    request = uuid.UUID(report["request_id"])
    audits = asyncio.run(
        events_matching(
            kafka,
            Topic.AUDIT_RECORDED.value,
            lambda a: a.target in targets or a.causation_id == request,
            6,
            timeout=30,
        )
    )
    # the erasure, then: denied, restored, erased (410), restored by the CLI, denied
    assert [(a.action, a.allowed) for a in audits] == [
        ("erase", True),
        ("deanonymize", False),
        ("deanonymize", True),
        ("deanonymize", True),
        ("deanonymize", True),
        ("deanonymize", False),
    ]
    assert [a.details["outcome"] for a in audits[1:]] == [
        "unauthenticated",  # not a key of the registry: 401
        "restored",
        "erased",
        "restored",
        "unauthenticated",
    ]

    # the raw batches were read once, then deleted: the transit store is empty
    assert [p for p in (data_dir / "transit").rglob("*") if p.is_file()] == []
    assert not (data_dir / "ingestion" / "spool").exists()
    assert (data_dir / "artifacts").exists()
    assert versioned.manifest.sha256 in {p.name for p in (data_dir / "artifacts").rglob("*")}

    # the scan: every topic outside the raw hops, every file under the data dir (both
    # services' databases and WAL, the whole artifact store with the version, the transit
    # store, both services' logs)
    raw = {t.value for t in RAW_HOPS} | {t.dlq for t in RAW_HOPS}
    topics = [name for t in Topic for name in (t.value, t.dlq) if name not in raw]
    blobs = {
        f"topic {name}": b"\n".join(values)
        for name, values in asyncio.run(topic_bytes(kafka, topics)).items()
    }
    blobs |= file_blobs(data_dir)
    assert any(name.endswith("anonymization.db") for name in blobs)
    assert any(name.endswith("ingestion.db") for name in blobs)
    assert any(name.endswith("ingestion.log") for name in blobs)
    assert search(blobs, planted) == []
    log_text = (data_dir / "logs" / "anon.log").read_text()
    assert "publicsuffix" not in log_text  # tldextract never reached for the network
    assert "ConnectionError" not in log_text
    # the scanner itself works: the raw ingest hop does hold the planted values
    ingest_hop = asyncio.run(topic_bytes(kafka, [Topic.RECORDS_INGESTED.value]))
    raw_blob = {"ingest": b"\n".join(ingest_hop[Topic.RECORDS_INGESTED.value])}
    assert len(search(raw_blob, planted)) == len(planted)


def test_demo_stage(kafka, service_dir: Path, service, tmp_path, capsys):
    data_dir = service_dir
    from services.anonymization import demo
    from shared.cli.demo import DemoContext
    from shared.settings import ServiceSettings

    _process, env = service
    (data_dir / "admin.key").write_text(ADMIN_KEY)
    settings = ServiceSettings(kafka_bootstrap=kafka, data_dir=data_dir)
    ctx = DemoContext(settings=settings, work_dir=tmp_path)
    import os

    os.environ["LLMOPS_ANONYMIZATION_API_PORT"] = env["LLMOPS_ANONYMIZATION_API_PORT"]
    try:
        demo.run(ctx)
    finally:
        del os.environ["LLMOPS_ANONYMIZATION_API_PORT"]
    assert ctx.results["erased_records"] == ["demo-0", "demo-1"]
    said = capsys.readouterr().err
    assert "answers HTTP 410" in said
    assert "Grace Whitaker" not in said.split("erase --subject")[0]
