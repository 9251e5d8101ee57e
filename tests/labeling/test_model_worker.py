"""Model suggestions end to end: the labeling service and a real serving worker (vLLM on the
tiny model) as processes on the real broker, command authority on. Labeling signs its
inference requests with its own service key; the worker verifies them against the registry
and answers on labeling's reply topic. Slow: the worker loads vLLM (a minute or more here)."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from pathlib import Path

import httpx
import pytest

from shared.authority import provision, service_principal
from shared.client import PlatformClient
from shared.events import InferenceRequested
from shared.modelkit import TinyModelSpec, ensure_tiny_model
from shared.settings import ServiceSettings
from tests.labeling.support import ADMIN, PROJECT, TICKETS, anonymized
from tests.support.stack import ServiceProcess, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SOURCE = "model:llmops-tiny@bootstrap"  # the worker's bootstrap model and version


def test_the_serving_worker_answers_labelings_questions(kafka: str, data_dir: Path) -> None:
    keys = provision(ADMIN, data_dir, {"labeling": {InferenceRequested.EVENT_TYPE}})
    cache = Path(os.environ.get("LLMOPS_TEST_MODEL_CACHE", Path.home() / ".cache" / "llmops-tests"))
    model = ensure_tiny_model(cache / "tiny-seed0", spec=TinyModelSpec(seed=0))
    common = {
        "LLMOPS_KAFKA_BOOTSTRAP": kafka,
        "LLMOPS_DATA_DIR": str(data_dir),
        "LLMOPS_ADMIN_KEY": ADMIN,
        "LLMOPS_REQUIRE_AUTHORITY": "true",
        "LLMOPS_LOG_LEVEL": "WARNING",
        "HF_HUB_OFFLINE": "1",
    }
    worker = ServiceProcess(
        "services.serving.worker",
        {
            **common,
            "LLMOPS_WORKER_BOOTSTRAP_PATH": str(model),
            "LLMOPS_WORKER_MAX_MODEL_LEN": "256",
            "LLMOPS_WORKER_MAX_IN_FLIGHT": "8",
        },
        data_dir / "worker.log",
    )
    labeling = ServiceProcess(
        "services.labeling",
        {
            **common,
            "LLMOPS_AUTHORITY_KEY": keys["labeling"],
            "LLMOPS_AUTHORITY_PRINCIPAL": service_principal("labeling"),
        },
        data_dir / "labeling.log",
    )
    dataset = f"support-{uuid.uuid4().hex[:6]}"
    try:
        worker.start(timeout=300)
        labeling.start(timeout=60)
        http = httpx.Client(
            base_url=f"http://127.0.0.1:{labeling.port}",
            timeout=30,
            headers={"authorization": f"Bearer {ADMIN}"},
        )
        suggest = {"enabled": True, "model": "llmops-tiny", "max_in_flight": 4}
        base = {**PROJECT, "datasets": [dataset], "rules": [], "model_suggestions": suggest}
        for name, threshold in (("sure", 0.0), ("picky", 1.01)):
            spec = {**base, "name": name, "auto_threshold": threshold}
            assert http.post("/api/projects", content=json.dumps(spec)).status_code == 200

        async def feed() -> None:
            settings = ServiceSettings(kafka_bootstrap=kafka, admin_key=ADMIN)
            async with PlatformClient(settings, producer_name="test") as client:
                await client.publish(anonymized(dataset, TICKETS))

        asyncio.run(feed())

        def finals() -> dict[str, int] | None:
            stats = http.get("/api/projects/sure").json()
            return stats if stats["status"].get("final") == len(TICKETS) else None

        # threshold 0: every answer is an auto label, with the model and version that gave it
        stats = wait_until(finals, timeout=240, interval=1)
        assert stats["provenance"] == {SOURCE: len(TICKETS)}

        # threshold above 1: every answer is a suggestion for people, with its confidence
        key = http.post("/api/annotators", json={"name": "ann"}).json()["key"]

        def suggested() -> dict[str, object] | None:
            # the annotator's leased task: the most uncertain one, unasked ones first
            task = http.get("/api/projects/picky/next", headers={"authorization": f"Bearer {key}"})
            found = task.json() if task.status_code == 200 else None
            return found if found and found["suggestion"] else None

        task = wait_until(suggested, timeout=120, interval=1)
        suggestion = task["suggestion"]
        assert suggestion["source"] == SOURCE
        assert suggestion["label"] in PROJECT["labels"]
        assert 0.0 < suggestion["confidence"] <= 1.0  # from the answer's token logprobs
        assert http.get("/api/projects/picky").json()["status"].get("final", 0) == 0
    finally:
        labeling.stop()
        worker.stop()
    assert "unauthorized" not in (data_dir / "worker.log").read_text()
