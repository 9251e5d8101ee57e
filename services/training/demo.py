"""Demo stage: train `llmops-tiny` on the labeled version, with progress, and keep its lineage.

Uses ``ctx.results["labeled_version"]`` (the labeling stage) when present; otherwise it
cuts a small synthetic labeled version itself and announces it, as labeling would.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from services.training import synthetic
from services.training.follow import follow_run
from shared.client import PlatformClient
from shared.events import DatasetVersioned, ModelTrained, TrainingProgressed, TrainingRequested
from shared.storage import ArtifactStore

MODEL_NAME = "llmops-tiny"
SYNTHETIC_DATASET = "support-categories"


async def _synthetic_version(ctx: Any, client: PlatformClient) -> tuple[str, str]:
    store = ArtifactStore(ctx.settings.artifact_root)
    manifest, claim = synthetic.cut(store, SYNTHETIC_DATASET, synthetic.records())
    await client.publish(
        DatasetVersioned(
            dataset=manifest.dataset,
            version=manifest.version,
            records=manifest.record_count,
            manifest=claim,
            labeled=True,
        )
    )
    ctx.say(f"no labeled version from labeling: cut {manifest.dataset}@{manifest.version}")
    return manifest.dataset, manifest.version


def run(ctx: Any) -> None:
    async def train() -> ModelTrained | TrainingProgressed:
        async with PlatformClient(ctx.settings, producer_name="demo") as client:
            labeled = ctx.results.get("labeled_version")
            if labeled:
                dataset, version = labeled["dataset"], labeled["version"]
            else:
                dataset, version = await _synthetic_version(ctx, client)
            request = TrainingRequested(
                model_name=MODEL_NAME,
                dataset=dataset,
                dataset_version=version,
                base_model="tiny",
                hyperparameters={"max_steps": 40},
                reason="demo",
            )
            if ctx.results.get("correlation_id"):
                request = request.model_copy(
                    update={"correlation_id": uuid.UUID(str(ctx.results["correlation_id"]))}
                )
            await client.publish(request)
            ctx.say(f"training {MODEL_NAME} on {dataset}@{version} (run {request.event_id})")

            def show(event: TrainingProgressed) -> None:
                if event.loss is not None:
                    rate = f", {event.tokens_per_s:.0f} tokens/s" if event.tokens_per_s else ""
                    ctx.say(f"  step {event.step}/{event.total_steps}: loss {event.loss:.3f}{rate}")

            return await follow_run(client, request.event_id, show, idle_timeout_s=600)

    result = asyncio.run(train())
    if isinstance(result, TrainingProgressed):
        raise RuntimeError(f"training failed: {result.reason}")
    metrics = ", ".join(f"{k} {v:.3g}" for k, v in sorted(result.metrics.items()))
    ctx.say(f"model {result.model_name}@{result.model_version}: {metrics}")
    ctx.say(
        f"lineage: {len(result.record_ids)} records, {len(result.subject_ids)} subjects, "
        f"base {result.base_model}, code {result.code_version}"
    )
    if result.loss_curve is not None:
        ctx.say(f"loss curve: {result.loss_curve.uri}")
    ctx.results["trained_model"] = {
        "model_name": result.model_name,
        "model_version": result.model_version,
        "run_id": str(result.run_id),
    }
