"""The whole loop on the real broker with real vLLM: evaluation service, serving worker and
gateway as real processes. A better candidate is evaluated, promoted by the gates and served
(the gateway's system_fingerprint changes); `llmops models rollback` restores the champion."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from shared.client import PlatformClient
from shared.datasets import cut_version
from shared.events import ClaimCheck, DatasetVersioned, ModelEvaluated, ModelTrained
from shared.modelkit import MODEL_DIR_MEDIA_TYPE, dir_digest, ensure_tiny_model
from shared.settings import ServiceSettings
from shared.storage import ArtifactStore
from shared.topics import Topic
from tests.evaluation import fakes, models
from tests.serving.stack import ServingStack
from tests.support.stack import ROOT, ServiceProcess, wait_until

# vLLM starts three times here (worker, evaluation, worker again): minutes on a busy machine
pytestmark = [pytest.mark.integration, pytest.mark.timeout(1500)]
MODEL = "llmops-tiny"
ADMIN = "sk-llmops-eval-admin"
READ = {"Authorization": f"Bearer {ADMIN}"}  # the registry's reads need a key (viewer+)


@pytest.fixture(scope="module")
def platform(kafka: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    root = tmp_path_factory.mktemp("evaluation")
    bootstrap = ensure_tiny_model(models.CACHE / "tiny-seed0")
    candidate = models.fine_tuned("billing", fakes.one_label_rows())
    with ServingStack(kafka, root, bootstrap, ADMIN).start(workers=1, gateways=1) as serving:
        env = {
            **serving.env,
            "LLMOPS_EVALUATION_BOOTSTRAP_PATH": str(bootstrap),
            "LLMOPS_EVALUATION_GATES": json.dumps({"min_accuracy": 0.5}),
            "LLMOPS_EVALUATION_MAX_NEW_TOKENS": "6",
            "LLMOPS_EVALUATION_LOAD_TEST_REQUESTS": "2",
        }
        evaluation = ServiceProcess("services.evaluation", env, root / "logs" / "evaluation.log")
        evaluation.start(timeout=120)
        try:
            yield {
                "serving": serving,
                "evaluation": evaluation,
                "root": root,
                "candidate": candidate,
                "env": env,
            }
        finally:
            evaluation.stop()


def _fingerprints(serving: ServingStack) -> set[str]:
    client = serving.client()
    return {
        client.completions.create(model=MODEL, prompt="x", max_tokens=1).system_fingerprint
        for _ in range(4)
    }


def test_better_candidate_is_promoted_served_and_rolled_back(platform: dict[str, object]) -> None:
    serving: ServingStack = platform["serving"]  # type: ignore[assignment]
    evaluation: ServiceProcess = platform["evaluation"]  # type: ignore[assignment]
    env: dict[str, str] = platform["env"]  # type: ignore[assignment]
    registry = f"http://127.0.0.1:{evaluation.port}/v1/registry"
    settings = ServiceSettings(
        kafka_bootstrap=env["LLMOPS_KAFKA_BOOTSTRAP"], data_dir=Path(env["LLMOPS_DATA_DIR"])
    )
    # the bootstrap model serving started with becomes the champion (from its heartbeats)
    wait_until(
        lambda: httpx.get(f"{registry}/models", headers=READ).json()["data"],
        timeout=60,
        interval=0.5,
    )
    models = httpx.get(f"{registry}/models", headers=READ).json()["data"]
    assert models[0]["aliases"] == {"champion": "bootstrap"}

    store = ArtifactStore(settings.artifact_root)
    manifest, claim = cut_version(
        store,
        "tickets",
        fakes.one_label_rows(),
        labeled=True,
        task="classification",
        splits={"test": 12},
    )
    candidate: Path = platform["candidate"]  # type: ignore[assignment]
    digest, size = dir_digest(candidate)
    artifact = ClaimCheck(
        uri=str(candidate), sha256=digest, size=size, media_type=MODEL_DIR_MEDIA_TYPE
    )
    trained = ModelTrained(
        run_id=uuid.uuid4(),
        model_name=MODEL,
        model_version="v2",
        artifact=artifact,
        dataset="tickets",
        dataset_version=manifest.version,
        metrics={"loss": 0.1},
    )

    async def run() -> ModelEvaluated:
        async with PlatformClient(settings, producer_name="test") as client:
            await client.publish(
                DatasetVersioned(
                    dataset="tickets",
                    version=manifest.version,
                    records=manifest.record_count,
                    manifest=claim,
                    labeled=True,
                )
            )
            await client.publish(trained)
            return await client.wait_for(
                Topic.MODEL_EVALUATED, lambda e: e.model_version == "v2", timeout_s=600
            )

    evaluated = asyncio.run(run())
    assert evaluated.passed, evaluated.reasons
    assert evaluated.outcome == "promoted"
    assert evaluated.compared_with == "bootstrap"
    assert evaluated.scores["accuracy"] >= 0.5
    assert evaluated.correlation_id == trained.correlation_id
    report = httpx.get(
        f"{registry}/models/{MODEL}/versions/v2/report.html",
        headers={"Authorization": f"Bearer {ADMIN}"},
    )
    assert report.status_code == 200
    assert "Candidate vs champion bootstrap" in report.text

    wait_until(lambda: _fingerprints(serving) == {"v2"}, timeout=300, interval=1)

    cli = subprocess.run(
        [sys.executable, "-m", "shared.cli.main", "models", "rollback", MODEL, "--reason", "test"],
        env={**os.environ, **env, "LLMOPS_REGISTRY_URL": registry.removesuffix("/v1/registry")},
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert cli.returncode == 0, cli.stderr
    assert json.loads(cli.stdout)["to_version"] == "bootstrap"
    wait_until(lambda: _fingerprints(serving) == {"bootstrap"}, timeout=120, interval=0.5)
    aliases = httpx.get(f"{registry}/models/{MODEL}", headers=READ).json()["aliases"]
    assert aliases["champion"]["version"] == "bootstrap"
