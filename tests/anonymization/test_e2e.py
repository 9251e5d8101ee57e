"""Ingestion and anonymization as real processes: the erasure report aggregates both."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid

import pytest

from shared.events import IngestRequested
from shared.topics import Topic
from tests.anonymization.corpus import generate
from tests.anonymization.scan import events_matching, file_blobs, search, skip_history, topic_bytes
from tests.support.stack import ROOT, ServiceProcess, free_port, produce

pytestmark = pytest.mark.e2e

RAW_HOPS = {
    Topic.RECORDS_INGESTED,
    Topic.INGEST_REQUESTED,
    Topic.INFERENCE_REQUESTED,
    Topic.INFERENCE_COMPLETED,
}


def test_ingest_anonymize_erase_across_services(kafka, data_dir, tmp_path):
    suffix = uuid.uuid4().hex[:8]
    env = {
        "LLMOPS_KAFKA_BOOTSTRAP": kafka,
        "LLMOPS_DATA_DIR": str(data_dir),
        "LLMOPS_ANONYMIZATION_API_PORT": str(free_port()),
        "LLMOPS_ADMIN_KEY": "k" * 24,
        "LLMOPS_INGESTION_CONSUMER_GROUP": f"ingestion-{suffix}",
        "LLMOPS_ANONYMIZATION_CONSUMER_GROUP": f"anonymization-{suffix}",
    }
    groups = [f"ingestion-{suffix}", f"ingestion-{suffix}-erasure", f"anonymization-{suffix}"]
    asyncio.run(skip_history(kafka, [*groups, f"ingestion-{suffix}-versions"]))
    logs = tmp_path / "logs"
    ingestion = ServiceProcess("services.ingestion", env, logs / "ingestion.log")
    anonymization = ServiceProcess("services.anonymization", env, logs / "anonymization.log")
    ingestion.start(timeout=240)
    anonymization.start(timeout=240)
    try:
        docs = generate(40, seed=99, clean_share=0.0)
        request = IngestRequested(dataset="e2e-pii", records=[{"text": d.text} for d in docs])
        asyncio.run(produce(kafka, Topic.INGEST_REQUESTED.value, [request.to_bytes()]))
        (batch,) = asyncio.run(
            events_matching(
                kafka,
                Topic.RECORDS_ANONYMIZED.value,
                lambda e: e.dataset == "e2e-pii",
                1,
                timeout=180,
            )
        )
        assert batch.count == len(docs)

        email = next(v for d in docs for v in d.values(("EMAIL_ADDRESS",)))
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "shared.cli.main",
                "erase",
                "--subject",
                email,
                "--wait",
                "--json",
                "--others",
                "10",
            ],
            cwd=ROOT,
            env={**os.environ, **env, "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout)
        assert report["found"]
        assert set(report["services"]) == {"anonymization", "ingestion"}
        assert report["services"]["ingestion"]["found"]

        planted = sorted({v for d in docs for v in d.values()})
        raw = {t.value for t in RAW_HOPS} | {t.dlq for t in RAW_HOPS}
        topics = [name for t in Topic for name in (t.value, t.dlq) if name not in raw]
        blobs = {
            f"topic {name}": b"\n".join(values)
            for name, values in asyncio.run(topic_bytes(kafka, topics)).items()
        }
        ours = {
            name: blob
            for name, blob in file_blobs(data_dir).items()
            if name.startswith("anonymization.db") or name.startswith("secrets")
        }
        ours |= {"anonymization.log": (logs / "anonymization.log").read_bytes()}
        assert search(blobs | ours, planted) == []
    finally:
        anonymization.stop()
        ingestion.stop()
