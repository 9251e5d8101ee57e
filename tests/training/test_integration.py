"""Integration tier: the training service as a real process on the real broker.

A labeled version trains by policy without a hand in between, and by one CLI command
with a progress bar; a bad request makes `llmops train` exit non-zero with the reason.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.training import synthetic
from shared.client import PlatformClient
from shared.events import DatasetVersioned, ModelTrained
from shared.settings import ServiceSettings
from shared.storage import ArtifactStore
from shared.topics import Topic
from tests.anonymization.scan import skip_history
from tests.support.stack import ServiceProcess

pytestmark = pytest.mark.integration
LLMOPS = str(Path(sys.executable).parent / "llmops")
AUTO = f"auto-{uuid.uuid4().hex[:6]}"


@pytest.fixture(scope="module")
def service(kafka: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    root = tmp_path_factory.mktemp("training")
    group = f"training-{uuid.uuid4().hex[:8]}"
    env = {
        "LLMOPS_KAFKA_BOOTSTRAP": kafka,
        "LLMOPS_DATA_DIR": str(root / "data"),
        "LLMOPS_ARTIFACT_URL": str(root / "artifacts"),
        "LLMOPS_LOG_LEVEL": "WARNING",
        "LLMOPS_TRAINING_CONSUMER_GROUP": group,
        "LLMOPS_TRAINING_VERSION_WAIT_S": "10",
        "LLMOPS_TRAINING_CHECKPOINT_STEPS": "5",
        "LLMOPS_TRAINING_POLICIES": json.dumps(
            {AUTO: {"set_policy": "auto", "model_name": AUTO, "hyperparameters": {"max_steps": 5}}}
        ),
    }
    asyncio.run(skip_history(kafka, [group, f"{group}-versions"]))
    process = ServiceProcess("services.training", env, root / "training.log").start()
    yield env
    process.stop()


def publish_version(env: dict[str, str], dataset: str) -> DatasetVersioned:
    store = ArtifactStore(env["LLMOPS_ARTIFACT_URL"])
    manifest, claim = synthetic.cut(store, dataset, synthetic.records())
    event = DatasetVersioned(
        dataset=dataset,
        version=manifest.version,
        records=manifest.record_count,
        manifest=claim,
        labeled=True,
    )

    async def send() -> None:
        async with PlatformClient(
            ServiceSettings(kafka_bootstrap=env["LLMOPS_KAFKA_BOOTSTRAP"])
        ) as c:
            await c.publish(event)

    asyncio.run(send())
    return event


def llmops(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [LLMOPS, *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )


def test_a_labeled_version_trains_by_policy(service: dict[str, str]) -> None:
    version = publish_version(service, AUTO)

    async def trained() -> ModelTrained:
        cfg = ServiceSettings(kafka_bootstrap=service["LLMOPS_KAFKA_BOOTSTRAP"])
        async with PlatformClient(cfg) as client:
            return await client.wait_for(  # type: ignore[no-any-return]
                Topic.MODEL_TRAINED, lambda e: e.dataset == AUTO, timeout_s=300
            )

    model = asyncio.run(trained())
    assert model.model_name == AUTO
    assert model.dataset_version == version.version
    assert model.correlation_id == version.correlation_id  # one id through the loop
    assert model.request_id == uuid.uuid5(version.event_id, "training")
    assert model.parameters["max_steps"] == 5
    assert len(model.record_ids) == 240
    assert model.subject_ids
    assert model.code_version
    store = ArtifactStore(service["LLMOPS_ARTIFACT_URL"])
    assert store.exists(model.artifact)
    assert model.loss_curve is not None
    page = store.get_bytes(model.loss_curve).decode()
    assert "loss-curve" in page
    assert 'src="http' not in page  # self-contained: plotly.js is inlined, no CDN
    assert len(page) > 1_000_000


def test_cli_trains_with_progress_and_fails_clearly(service: dict[str, str]) -> None:
    dataset = f"cli-{uuid.uuid4().hex[:6]}"
    version = publish_version(service, dataset)
    done = llmops(
        service,
        "train",
        "--dataset",
        f"{dataset}@{version.version[:8]}",
        "--lora",
        "--param",
        "max_steps=10",
        "--param",
        "learning_rate=0.01",
        "--wait",
        "--json",
    )
    assert done.returncode == 0, done.stderr
    model = json.loads(done.stdout.strip().splitlines()[-1])
    assert model["event_type"] == "llmops.model.trained"
    assert model["lora"] is True
    assert model["adapter"] is not None
    assert "steps" in done.stderr  # the progress bar was drawn

    failed = llmops(service, "train", "--dataset", f"{dataset}@ffffffff", "--wait")
    assert failed.returncode == 1
    assert "unknown dataset version" in failed.stdout
