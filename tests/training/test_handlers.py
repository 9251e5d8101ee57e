"""The training service in memory: TestKafkaBroker, a real database (SQLite and PostgreSQL).

Handlers store requests as runs, keep the catalogue of versions and apply policies; the
run queue turns bad requests into a ``failed`` TrainingProgressed with the reason.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest
from faststream.kafka import TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage
from sqlmodel import Session, select

from services.training import synthetic
from services.training.adapters.store import Policy, SeenVersion, TrainingRun
from services.training.app import build
from services.training.config import TrainingSettings
from services.training.domain.data import split_examples
from shared.datasets import LabeledExample
from shared.events import (
    DatasetVersioned,
    ErasureCompleted,
    Event,
    TrainingProgressed,
    TrainingRequested,
    decode,
)
from shared.topics import Topic

pytestmark = pytest.mark.handlers


class Service:
    def __init__(self, data_dir: Path, database_url: str | None = None, **kw: Any) -> None:
        settings = TrainingSettings(data_dir=data_dir, database_url=database_url, **kw)
        self.runtime, _app = build(settings)
        self.progress: list[TrainingProgressed] = []

        async def collect(message: KafkaMessage) -> None:
            self.progress.append(decode(message.body, expected=TrainingProgressed))

        self.runtime.broker.subscriber(Topic.TRAINING_PROGRESSED.value, group_id="test-progress")(
            collect
        )

    async def publish(self, event: Event) -> None:
        await self.runtime.broker.publish(event.to_bytes(), Topic.for_event(event).value)

    def rows(self, table: Any) -> list[Any]:
        with Session(self.runtime.engine) as session:
            return list(session.exec(select(table)).all())


def versioned(service: Service, dataset: str, labeled: bool = True) -> DatasetVersioned:
    manifest, claim = synthetic.cut(service.runtime.artifacts, dataset, synthetic.records())
    return DatasetVersioned(
        dataset=dataset,
        version=manifest.version,
        records=manifest.record_count,
        manifest=claim,
        labeled=labeled,
    )


async def until(predicate: Any, timeout: float = 30.0) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while not (value := predicate()):
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.05)
    return value


async def test_versions_policies_and_requests_are_stored(data_dir: Path, engine: Any) -> None:
    url = str(engine.url.render_as_string(hide_password=False))
    dataset = f"tickets-{uuid.uuid4().hex[:8]}"
    service = Service(data_dir, url)
    async with TestKafkaBroker(service.runtime.broker):
        await service.runtime.bus.start()
        try:
            policy = TrainingRequested(
                model_name="auto-model",
                dataset=dataset,
                dataset_version="",
                base_model="tiny",
                hyperparameters={"max_steps": 5},
                set_policy="auto",
            )
            await service.publish(policy)
            await until(lambda: [p for p in service.rows(Policy) if p.dataset == dataset])
            event = versioned(service, dataset)
            await service.publish(event)
            await service.publish(event)  # redelivered: one run, not two
            runs = await until(
                lambda: [r for r in service.rows(TrainingRun) if r.dataset == dataset]
            )
            assert [r.model_name for r in runs] == ["auto-model"]
            request = TrainingRequested.model_validate_json(runs[0].request_json)
            assert request.dataset_version == event.version
            assert request.hyperparameters == {"max_steps": 5}
            assert request.reason == "policy"
            seen = [v for v in service.rows(SeenVersion) if v.dataset == dataset]
            assert [v.version for v in seen] == [event.version]
        finally:
            await service.runtime.bus.stop()


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"dataset_version": "0000dead"}, "unknown dataset version"),
        ({"search_trials": 2, "search_space": {"nope": {"low": 1, "high": 2}}}, "invalid search"),
        ({"search_trials": 2, "search_space": {"learning_rate": {"low": 2, "high": 1}}}, "low"),
        ({"hyperparameters": {"max_steps": 0}}, "invalid hyperparameters"),
        ({"base_model": "/nonexistent/model"}, "does not load"),
        ({"task": "dpo"}, "dpo needs a preference version"),
    ],
)
async def test_bad_requests_fail_with_a_reason(
    data_dir: Path, fields: dict[str, Any], reason: str
) -> None:
    service = Service(data_dir, version_wait_s=0, poll_s=0.1)
    queue = service.runtime.state["queue"]
    async with TestKafkaBroker(service.runtime.broker):
        await service.runtime.bus.start()
        await queue.start()
        try:
            event = versioned(service, "tickets")
            await service.publish(event)
            await until(lambda: service.rows(SeenVersion))
            stored_before = sorted((data_dir / "artifacts").rglob("*"))
            request = TrainingRequested(
                **{
                    "model_name": "m",
                    "dataset": "tickets",
                    "dataset_version": event.version,
                    "base_model": "tiny",
                    **fields,
                }
            )
            await service.publish(request)
            failed = await until(
                lambda: [p for p in service.progress if p.status == "failed"], timeout=240
            )
            assert failed[0].run_id == request.event_id
            assert reason in (failed[0].reason or ""), failed[0].reason
            assert [r.status for r in service.rows(TrainingRun)] == ["failed"]
            assert sorted((data_dir / "artifacts").rglob("*")) == stored_before  # nothing written
        finally:
            await queue.stop()
            await service.runtime.bus.stop()


async def test_erasure_with_retrain_queues_one_run_per_affected_model_without_the_records(
    data_dir: Path,
) -> None:
    """`llmops erase --retrain`: anonymization's answer names the models trained on the
    subject's records; each gets a new run of its own request with those records left out."""
    service = Service(data_dir)
    original = TrainingRequested(
        model_name="clf",
        dataset="tickets",
        dataset_version="latest",
        base_model="tiny",
        hyperparameters={"max_steps": 7},
        lora=True,
        exclude_records=["r0"],
    )
    with Session(service.runtime.engine) as session:
        session.add(
            TrainingRun(
                run_id=str(original.event_id),
                model_name="clf",
                dataset="tickets",
                request_json=original.model_dump_json(),
                status="completed",
                model_version="v1",
                result={"dataset_version": "abc123"},
            )
        )
        session.commit()
    answer = ErasureCompleted(
        request_id=uuid.uuid4(),
        subject_ref="s" * 64,
        service="anonymization",
        found=True,
        records=["r2", "r1"],
        model_versions=["clf@v1", "elsewhere@v9"],
        retrain=True,
    )
    ignored = [
        answer.model_copy(update={"event_id": uuid.uuid4(), "retrain": False}),
        answer.model_copy(update={"event_id": uuid.uuid4(), "service": "labeling"}),
    ]
    async with TestKafkaBroker(service.runtime.broker):
        await service.runtime.bus.start()
        try:
            for event in [*ignored, answer, answer]:  # the answer redelivered: one run
                await service.publish(event)
            await until(lambda: [r for r in service.rows(TrainingRun) if r.status == "pending"])
            await asyncio.sleep(0.5)  # let the redelivered and ignored answers through too
            runs = [r for r in service.rows(TrainingRun) if r.status == "pending"]
            assert len(runs) == 1
            request = TrainingRequested.model_validate_json(runs[0].request_json)
            assert request.reason == "erasure"
            assert request.exclude_records == ["r0", "r1", "r2"]
            assert (request.model_name, request.dataset, request.dataset_version) == (
                "clf",
                "tickets",
                "abc123",  # the version the model was trained on, not "latest"
            )
            assert request.hyperparameters == {"max_steps": 7}
            assert request.lora
            assert request.causation_id == answer.event_id
        finally:
            await service.runtime.bus.stop()


def test_excluded_records_are_left_out_of_every_split() -> None:
    rows = synthetic.records({"train": 6, "validation": 2, "test": 2})
    examples = [LabeledExample.model_validate(row) for row in rows]
    erased = {rows[0]["record_id"], rows[7]["record_id"]}
    splits = split_examples(examples, "sft", frozenset(erased))
    kept = {e.record_id for e in [*splits.train, *splits.validation, *splits.test]}
    assert kept == {row["record_id"] for row in rows} - erased
