"""The labeling service in memory (TestKafkaBroker) with its API over ASGI."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from faststream.kafka import TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage
from sqlmodel import Session, func, select

from services.labeling.app import build
from services.labeling.config import LabelingSettings
from shared.bus.store import OutboxEntry
from shared.events import Event, RecordsAnonymized, decode
from shared.events.privacy import AnonymizedRecord
from shared.topics import Topic
from tests.anonymization.scan import skip_history
from tests.support.stack import ServiceProcess

ADMIN = "admin-secret-key"
TICKETS = [
    ("t1", "I want a refund for the double charge on my invoice.", "billing"),
    ("t2", "My parcel never arrived, tracking is stuck.", "shipping"),
    ("t3", "I cannot log in after the password reset.", "account"),
    ("t4", "The package was delivered to the wrong address.", "shipping"),
    ("t5", "Why was my card charged twice this month?", "billing"),
    ("t6", "Please close my account and delete my data.", "account"),
]

PROJECT = {
    "name": "tickets",
    "task": "classification",
    "labels": ["billing", "shipping", "account"],
    "datasets": ["support"],
    "instruction": "Which team should handle this ticket?",
    "overlap": 2,
    "auto_threshold": 0.9,
    "rules": [{"label": "billing", "keywords": ["refund", "invoice"], "confidence": 0.95}],
}


def anonymized(
    dataset: str,
    rows: list[tuple[str, str, str]],
    subjects: dict[str, list[str]] | None = None,
    **kw: Any,
) -> RecordsAnonymized:
    return RecordsAnonymized(
        dataset=dataset,
        records=[
            AnonymizedRecord(
                record_id=f"rid-{sid}",
                text=text,
                source_id=sid,
                metadata={"category": cat},
                subjects=(subjects or {}).get(sid, []),
            )
            for sid, text, cat in rows
        ],
        count=len(rows),
        **kw,
    )


class Harness:
    def __init__(self, data_dir: Path, database_url: str | None = None) -> None:
        settings = LabelingSettings(
            data_dir=data_dir,
            admin_key=ADMIN,
            database_url=database_url,
            lease_s=60,
        )
        self.runtime, self.app = build(settings)
        self.seen: dict[str, list[Event]] = {}
        for topic in (
            Topic.RECORDS_LABELED,
            Topic.DATASET_VERSIONED,
            Topic.ERASURE_COMPLETED,
            Topic.AUDIT_RECORDED,
        ):
            self._collect(topic)
        self.http: httpx.AsyncClient

    def _collect(self, topic: Topic) -> None:
        async def collect(message: KafkaMessage) -> None:
            self.seen.setdefault(topic.value, []).append(decode(message.body))

        self.runtime.broker.subscriber(topic.value, group_id=f"test-{topic.name}")(collect)

    def events(self, topic: Topic) -> list[Any]:
        return self.seen.get(topic.value, [])

    async def publish(self, event: Event) -> None:
        await self.runtime.broker.publish(event.to_bytes(), Topic.for_event(event).value)

    async def wait(self, topic: Topic, predicate: Any = None, timeout: float = 20) -> Any:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            found = [e for e in self.events(topic) if predicate is None or predicate(e)]
            if found:
                return found[-1]
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"no matching event on {topic}")
            await asyncio.sleep(0.02)

    async def settled(self, timeout: float = 20) -> None:
        """Wait until the outbox relay has sent everything (in memory, a publish runs the
        consumers inline, our own included: let that finish before the next request)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            with Session(self.runtime.engine) as session:
                if session.exec(select(func.count()).select_from(OutboxEntry)).one() == 0:
                    return
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError("the outbox did not drain")
            await asyncio.sleep(0.05)

    def as_(self, key: str) -> dict[str, str]:
        return {"authorization": f"Bearer {key}"}

    async def annotator(self, name: str) -> str:
        res = await self.http.post("/api/annotators", json={"name": name}, headers=self.as_(ADMIN))
        assert res.status_code == 200, res.text
        return str(res.json()["key"])


def start_curator(kafka: str, data_dir: Path, log: Path, **extra: str) -> ServiceProcess:
    """The labeling service as a real process, in fresh consumer groups that skip what
    earlier tests left in the broker: it cuts the versions of `llmops ingest --version`."""
    group = f"labeling-{uuid.uuid4().hex[:8]}"
    names = ("records", "ingest", "ingest-done", "erasure", "projects")
    groups = [f"{group}-{name}" for name in names]
    asyncio.run(skip_history(kafka, groups))
    env = {
        "LLMOPS_KAFKA_BOOTSTRAP": kafka,
        "LLMOPS_DATA_DIR": str(data_dir),
        "LLMOPS_LOG_LEVEL": "WARNING",
        "LLMOPS_LABELING_CONSUMER_GROUP": group,
        **extra,
    }
    return ServiceProcess("services.labeling", env, log).start(timeout=120)


@asynccontextmanager
async def running(
    data_dir: Path,
    database_url: str | None = None,
    setup: Callable[[Harness], object] | None = None,
) -> AsyncIterator[Harness]:
    """The service started in memory; ``setup`` adds subscribers (fakes of other services)
    to its broker before it starts."""
    harness = Harness(data_dir, database_url)
    if setup is not None:
        setup(harness)
    async with TestKafkaBroker(harness.runtime.broker):
        await harness.runtime.bus.start()
        await harness.app.state.suggester.start()
        transport = httpx.ASGITransport(app=harness.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://labeling") as client:
            harness.http = client
            try:
                yield harness
            finally:
                await harness.app.state.suggester.stop()
                await harness.runtime.bus.stop()
