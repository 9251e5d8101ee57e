"""The labeling service as a real process on the real embedded broker and SQLite.

Records arrive over Kafka, people label over HTTP, a kill -9 loses no submitted label, the
demo stage runs against it, an erasure is answered on the bus, and an ingest request that
asked for a version gets it from labeling.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from services.labeling import demo
from shared.cli.demo import DemoContext
from shared.client import PlatformClient
from shared.events import (
    DatasetVersioned,
    ErasureCompleted,
    IngestCompleted,
    IngestRequested,
    RecordsLabeled,
)
from shared.settings import ServiceSettings
from shared.topics import Topic
from tests.labeling.support import ADMIN, PROJECT, TICKETS, anonymized
from tests.support.stack import ServiceProcess, wait_until

pytestmark = pytest.mark.integration
LLMOPS = str(Path(sys.executable).parent / "llmops")


def start(kafka: str, data_dir: Path) -> ServiceProcess:
    env = {
        "LLMOPS_KAFKA_BOOTSTRAP": kafka,
        "LLMOPS_DATA_DIR": str(data_dir),
        "LLMOPS_ADMIN_KEY": ADMIN,
        "LLMOPS_LOG_LEVEL": "WARNING",
    }
    return ServiceProcess("services.labeling", env, data_dir / "labeling.log").start()


def test_labels_over_http_survive_a_kill_and_flow_to_kafka(
    kafka: str, data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = ServiceSettings(kafka_bootstrap=kafka, admin_key=ADMIN)
    dataset = f"support-{uuid.uuid4().hex[:6]}"
    service = start(kafka, data_dir)
    base = f"http://127.0.0.1:{service.port}"
    admin = {"authorization": f"Bearer {ADMIN}"}
    try:

        async def feed() -> None:
            async with PlatformClient(settings, producer_name="test") as client:
                await client.publish(anonymized(dataset, TICKETS))

        asyncio.run(feed())
        spec = {**PROJECT, "datasets": [dataset], "overlap": 1}
        http = httpx.Client(base_url=base, timeout=30)
        assert (
            http.post("/api/projects", content=json.dumps(spec), headers=admin).status_code == 200
        )
        tasks = wait_until(
            lambda: (
                http.get("/api/projects/tickets", headers=admin).json()["tasks"] == len(TICKETS)
                or None
            ),
            timeout=60,
        )
        assert tasks
        key = http.post("/api/annotators", json={"name": "ann"}, headers=admin).json()["key"]
        ann = {"authorization": f"Bearer {key}"}
        task = http.get("/api/projects/tickets/next", headers=ann).json()
        saved = http.post(
            f"/api/projects/tickets/tasks/{task['task_id']}/answer",
            json={"label": "account"},
            headers=ann,
        )
        assert saved.status_code == 200

        service.kill()  # SIGKILL: the answer was committed before the 200
        service = start(kafka, data_dir)
        http = httpx.Client(base_url=f"http://127.0.0.1:{service.port}", timeout=30)
        stats = http.get("/api/projects/tickets", headers=admin).json()
        assert stats["status"]["final"] == 2  # the rule's auto label + ann's answer
        assert stats["annotators"][0]["annotator"] == "ann"

        async def outcomes() -> tuple[RecordsLabeled, ErasureCompleted, DatasetVersioned]:
            async with PlatformClient(settings, producer_name="test") as client:
                labeled = await client.wait_for(
                    Topic.RECORDS_LABELED,
                    lambda e: (
                        e.project == "tickets" and e.records[0].record_id == task["record_id"]
                    ),
                    timeout_s=60,
                )
                erase = await client.publish(
                    ErasureCompleted(
                        request_id=uuid.uuid4(),
                        subject_ref="s",
                        service="anonymization",
                        found=True,
                        records=[task["record_id"]],
                    )
                )
                answer = await client.wait_for(
                    Topic.ERASURE_COMPLETED,
                    lambda e: e.service == "labeling" and e.causation_id == erase.event_id,
                    timeout_s=60,
                )
                request = IngestRequested(dataset=dataset + "-v", cut_version=True)
                await client.publish(
                    anonymized(request.dataset, TICKETS[:2], request_id=request.event_id)
                )
                await client.publish(request)
                await client.publish(
                    request.caused(
                        IngestCompleted,
                        dataset=request.dataset,
                        request_id=request.event_id,
                        emitted=2,
                    )
                )
                version = await client.wait_for(
                    Topic.DATASET_VERSIONED,
                    lambda e: e.causation_id == request.event_id,
                    timeout_s=60,
                )
                return labeled, answer, version

        labeled, answer, version = asyncio.run(outcomes())
        assert labeled.records[0].label == "account"
        assert answer.records == [task["record_id"]]
        assert answer.removed["tasks"] == 1
        assert version.records == 2
        assert not version.labeled

        # the CLI: the datasets commands read the topic and the manifests
        env = {
            **os.environ,
            "LLMOPS_KAFKA_BOOTSTRAP": kafka,
            "LLMOPS_DATA_DIR": str(data_dir),
            "LLMOPS_ADMIN_KEY": ADMIN,
            "LLMOPS_LABELING_URL": f"http://127.0.0.1:{service.port}",
        }
        shown = subprocess.run(
            [LLMOPS, "datasets", "show", f"{version.dataset}@{version.version}", "--json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        body = json.loads(shown.stdout)
        assert body["record_count"] == 2
        assert body["lineage"][0]["request_id"] == str(version.causation_id)
        listed = subprocess.run(
            [LLMOPS, "label", "project", "list", "--json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        assert json.loads(listed.stdout.splitlines()[0])["project"] == "tickets"

        # the demo stage against the running service (its own batch: no ingestion stage)
        monkeypatch.setenv("LLMOPS_LABELING_URL", f"http://127.0.0.1:{service.port}")
        ctx = DemoContext(settings=settings, work_dir=tmp_path)
        demo.run(ctx)
        labeled_version = ctx.results["labeled_version"]
        assert labeled_version["dataset"] == "ticket-routing-labeled"
        stats = http.get("/api/projects/ticket-routing", headers=admin).json()
        assert stats["status"]["open"] == 0
        assert stats["status"]["conflict"] == 0
        assert stats["agreement"]["cohen_kappa"] is not None
        assert 0.2 < stats["agreement"]["cohen_kappa"] < 1.0  # they sometimes disagree
    finally:
        service.stop()
