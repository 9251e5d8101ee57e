"""One real monitoring process on the real broker, fed once with a loop run's events.

Quiet traffic, then a drifted burst (with the loop's correlation id, published under a traced
span), labels and training progress: the integration, browser and Prometheus tests all read
this one loaded service (loading MiniLM twice would cost a minute on 2 cores).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from opentelemetry import trace

from services.monitoring.traffic import inference_batch
from shared.client import PlatformClient
from shared.events import (
    ClaimCheck,
    Event,
    ModelPromoted,
    ModelTrained,
    RecordsAnonymized,
    RecordsLabeled,
    TrainingProgressed,
)
from shared.events.labeling import LabeledRecord
from shared.events.privacy import AnonymizedRecord
from shared.settings import ServiceSettings
from tests.anonymization.scan import skip_history
from tests.support.stack import ServiceProcess, wait_until
from tests.support.telemetry import in_memory_spans

ADMIN_KEY = "test-admin-key-monitoring-0123"
AUTH = {"X-API-Key": ADMIN_KEY}  # monitoring's reads need a key (role viewer or above)
WINDOW = 40
FEEDBACK = 20


@dataclass
class Loaded:
    process: ServiceProcess
    url: str
    bootstrap: str
    data_dir: Path
    correlation_id: uuid.UUID
    publish_spans: list[tuple[str, str]]  # (trace id, span id) of the drifted publishes
    env: dict[str, str]


async def _feed(
    bootstrap: str, correlation_id: uuid.UUID, seen: Callable[[int], object]
) -> list[tuple[str, str]]:
    exporter = in_memory_spans()
    loop = {"correlation_id": correlation_id}
    run_id = uuid.uuid4()
    artifact = ClaimCheck(uri="file:///nowhere", sha256="0" * 64, size=1)
    setup: list[Event] = [
        ModelTrained(
            run_id=run_id,
            model_name="tickets-clf",
            model_version="v1",
            artifact=artifact,
            dataset="tickets",
            dataset_version="ds1",
            **loop,
        ),
        ModelPromoted(model_name="tickets-clf", model_version="v1", **loop),
        RecordsLabeled(
            dataset="tickets",
            project="p",
            count=3,
            records=[
                LabeledRecord(record_id=f"r{i}", text="t", label="x", annotators=2, agreement=a)
                for i, a in enumerate([0.7, 0.9, 0.8])
            ],
            **loop,
        ),
        *[
            TrainingProgressed(
                run_id=run_id, step=s, total_steps=10, metrics={"loss": 3.0 / (s + 1)}, **loop
            )
            for s in range(10)
        ],
    ]
    quiet = inference_batch("tickets-clf", "v1", 2 * WINDOW, drifted=False, seed=1)
    feedback = [
        RecordsAnonymized(
            dataset="feedback",
            count=1,
            records=[
                AnonymizedRecord(
                    record_id=f"feedback:{i}",
                    text="",
                    metadata={
                        "response_id": f"cmpl-{e.records[0].metadata['request_id']}",
                        "rating": 1 if i % 4 else -1,
                    },
                )
            ],
        )
        for i, e in enumerate(quiet[:FEEDBACK])
    ]
    drifted = [
        e.model_copy(update={"correlation_id": correlation_id})
        for e in inference_batch("tickets-clf", "v1", 2 * WINDOW, drifted=True, seed=2)
    ]
    tracer = trace.get_tracer("test")
    async with PlatformClient(ServiceSettings(kafka_bootstrap=bootstrap), "test") as client:
        # each topic has its own consumer: the model must be known before its labels are
        # counted, and the labels counted before the traffic the decision weighs them against
        for event in setup[:2]:
            await client.publish(event)
        await asyncio.to_thread(seen, 0)
        for event in setup[2:]:
            await client.publish(event)
        await asyncio.to_thread(seen, 3)
        for event in [*quiet, *feedback]:
            await client.publish(event)
        with tracer.start_as_current_span("drifted burst"):
            for event in drifted:
                await client.publish(event)
    return [
        (f"{s.context.trace_id:032x}", f"{s.context.span_id:016x}")
        for s in exporter.get_finished_spans()
        if s.name.endswith("publish")
    ]


@pytest.fixture(scope="session")
def loaded(kafka: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loaded]:
    data_dir = tmp_path_factory.mktemp("monitoring")
    group = f"monitoring-{uuid.uuid4().hex[:8]}"
    env = {
        "LLMOPS_KAFKA_BOOTSTRAP": kafka,
        "LLMOPS_DATA_DIR": str(data_dir),
        "LLMOPS_ADMIN_KEY": ADMIN_KEY,
        "LLMOPS_SPANS_FILE": str(data_dir / "spans.jsonl"),
        "LLMOPS_MONITORING_CONSUMER_GROUP": group,
        "LLMOPS_MONITORING_WINDOW_SIZE": str(WINDOW),
        "LLMOPS_MONITORING_POLL_INTERVAL_S": "1",
        "LLMOPS_MONITORING_COOLDOWN_S": "3600",
        "LLMOPS_MONITORING_MIN_NEW_LABELS": "2",
        "HF_HUB_OFFLINE": "1",
    }
    groups = [
        f"{group}.{s}"
        for s in (
            "records",
            "labels",
            "datasets",
            "requests",
            "progress",
            "trained",
            "evaluated",
            "promoted",
            "rolled-back",
        )
    ]
    asyncio.run(skip_history(kafka, groups))
    process = ServiceProcess("services.monitoring", env, data_dir / "logs" / "monitoring.log")
    process.start(timeout=240)
    url = f"http://127.0.0.1:{process.port}"
    correlation_id = uuid.uuid4()

    def seen(labels: int) -> object:
        def known() -> bool:
            models = httpx.get(f"{url}/api/status", headers=AUTH).json()["models"]
            return any(
                m["model_name"] == "tickets-clf" and m["new_labels"] >= labels for m in models
            )

        return wait_until(known, timeout=120, interval=0.5)

    spans = asyncio.run(_feed(kafka, correlation_id, seen))
    try:
        wait_until(
            lambda: len(httpx.get(f"{url}/api/decisions", headers=AUTH).json()) >= 2,
            timeout=180,
            interval=0.5,
        )
        yield Loaded(process, url, kafka, data_dir, correlation_id, spans, env)
    finally:
        process.stop()
