"""Demo stage 50: a trained model is evaluated, gated, explained, and promoted or blocked.

With the training stage's ``trained_model`` in ``ctx.results`` it waits for that version's
``ModelEvaluated``. Without it, it makes a candidate itself: the bootstrap model fine-tuned
for a few dozen steps on a small labeled set (cut as a dataset version), announced with
``DatasetVersioned`` + ``ModelTrained`` exactly as labeling and training would.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

from services.evaluation.candidate import fine_tune
from services.evaluation.config import EvaluationSettings
from shared.client import PlatformClient
from shared.datasets import cut_version
from shared.events import ClaimCheck, DatasetVersioned, ModelEvaluated, ModelTrained
from shared.modelkit import MODEL_DIR_MEDIA_TYPE, dir_digest, ensure_tiny_model
from shared.storage import ArtifactStore
from shared.topics import Topic


def demo_rows(n: int = 16) -> list[dict[str, Any]]:
    return [
        {
            "record_id": f"demo-{i}",
            "split": "test",
            "task": "classification",
            "prompt": f"Ticket {i}: which queue?\n",
            "completion": "billing",
            "label": "billing",
            "meta": {"region": "eu" if i % 2 else "us"},
        }
        for i in range(n)
    ]


async def _candidate(ctx: Any, client: PlatformClient) -> ModelTrained:
    settings = EvaluationSettings()
    rows = demo_rows()
    store = ArtifactStore(ctx.settings.artifact_root)
    manifest, claim = cut_version(
        store,
        "evaluation-demo",
        rows,
        labeled=True,
        producer="demo",
        task="classification",
        splits={"test": len(rows)},
    )
    base = ensure_tiny_model(Path(ctx.work_dir) / "evaluation" / "base")
    model_dir = await asyncio.to_thread(
        fine_tune, base, Path(ctx.work_dir) / "evaluation" / f"candidate-{manifest.version}", rows
    )
    digest, size = dir_digest(model_dir)
    version = f"demo-{digest[:8]}"
    ctx.say(f"no training stage: fine-tuned the bootstrap model into {version} (40 steps)")
    await client.publish(
        DatasetVersioned(
            dataset="evaluation-demo",
            version=manifest.version,
            records=len(rows),
            manifest=claim,
            labeled=True,
        )
    )
    trained = ModelTrained(
        run_id=uuid.uuid4(),
        model_name=settings.bootstrap_model,
        model_version=version,
        artifact=ClaimCheck(
            uri=str(model_dir), sha256=digest, size=size, media_type=MODEL_DIR_MEDIA_TYPE
        ),
        dataset="evaluation-demo",
        dataset_version=manifest.version,
    )
    await client.publish(trained)
    return trained


async def _run(ctx: Any) -> ModelEvaluated:
    async with PlatformClient(ctx.settings, producer_name="demo") as client:
        trained = ctx.results.get("trained_model")
        if trained:
            name, version = trained["model_name"], trained["model_version"]
        else:
            event = await _candidate(ctx, client)
            name, version = event.model_name, event.model_version
        ctx.say(f"evaluating {name} {version} against its champion (vLLM offline batch)...")
        evaluated: ModelEvaluated = await client.wait_for(
            Topic.MODEL_EVALUATED,
            lambda e: e.model_name == name and e.model_version == version,
            # vLLM's offline batch for candidate and champion, then the metrics: minutes on
            # a busy 2-core machine (the service's own limit per generation run is 900 s)
            timeout_s=1200,
        )
        return evaluated


def run(ctx: Any) -> None:
    event = asyncio.run(_run(ctx))
    scores = ", ".join(f"{k} {v:.3g}" for k, v in event.scores.items())
    ctx.say(f"scores: {scores}")
    for gate, passed in event.gates.items():
        ctx.say(f"gate {gate}: {'pass' if passed else 'FAIL'} - {event.reasons.get(gate, '')}")
    ctx.say(f"outcome: {event.outcome} (compared with {event.compared_with})")
    if event.report_url:
        ctx.say(f"report: {event.report_url}")
    ctx.results["evaluation"] = {
        "model_name": event.model_name,
        "model_version": event.model_version,
        "passed": event.passed,
        "outcome": event.outcome,
    }
