"""Command authority on the real embedded broker, with the ingestion service as a process.

A client with plain Kafka access publishes an IngestRequested that would read a local file:
unsigned, and signed by a key that is not the admin's. Both land in the DLQ with reason
``unauthorized`` and an audit record; neither is ingested. The same service ingests the
command the SDK signs with the admin key.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shared.authority import Signer
from shared.bus import resolve_dlq_value
from shared.client import PlatformClient
from shared.events import AuditRecorded, IngestCompleted, IngestRequested, decode
from shared.events.ingest import SourceSpec
from shared.settings import ServiceSettings
from shared.storage.artifacts import ArtifactStore
from shared.topics import Topic
from tests.support.stack import ServiceProcess, authority_env, produce, read_topic, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def kafka(private_kafka: str) -> str:
    """This module's own broker (see tests/conftest.py: private_kafka)."""
    return private_kafka


SECRET = "llm-integration-admin-secret"


@pytest.fixture
def ingestion(kafka: str, data_dir: Path) -> Iterator[ServiceProcess]:
    env = {
        "LLMOPS_KAFKA_BOOTSTRAP": kafka,
        "LLMOPS_DATA_DIR": str(data_dir),
        "LLMOPS_LOG_LEVEL": "WARNING",
        **authority_env(data_dir, SECRET, "ingestion"),
        "LLMOPS_INGESTION_CONSUMER_GROUP": f"ingestion-{uuid.uuid4().hex[:8]}",
    }
    service = ServiceProcess("services.ingestion", env, data_dir / "ingestion.log")
    yield service.start(timeout=180)
    service.stop()


def _of(
    kafka: str, topic: str, predicate: Any, *, at_least: int = 1, timeout: float = 120
) -> list[Any]:
    def fetch() -> list[Any]:
        records = asyncio.run(read_topic(kafka, topic, count=10**6, timeout=2))
        found = [r for r in records if predicate(r)]
        return found if len(found) >= at_least else []

    return wait_until(fetch, timeout=timeout, interval=0.5)  # type: ignore[no-any-return]


def test_forged_commands_go_to_the_dlq_and_signed_ones_are_ingested(
    kafka: str, data_dir: Path, ingestion: ServiceProcess
) -> None:
    dataset = f"authority-{uuid.uuid4().hex[:6]}"
    unsigned = IngestRequested(dataset=dataset, sources=[SourceSpec(uri="/etc/hostname")])
    forged = Signer.admin("a-guessed-secret").sign(
        IngestRequested(dataset=dataset, sources=[SourceSpec(uri="/etc/hostname")])
    )
    for attack in (unsigned, forged):
        asyncio.run(produce(kafka, Topic.INGEST_REQUESTED.value, [attack.to_bytes()], key=b"x"))

    settings = ServiceSettings(kafka_bootstrap=kafka, data_dir=data_dir, admin_key=SECRET)

    async def send() -> IngestRequested:
        async with PlatformClient(settings) as client:
            sent = await client.publish(
                IngestRequested(dataset=dataset, records=[{"text": "a signed request"}])
            )
            assert isinstance(sent, IngestRequested)
            assert sent.authority is not None
            return sent

    good = asyncio.run(send())
    attacks = {str(unsigned.event_id), str(forged.event_id)}

    def completed(record: Any) -> bool:
        return json.loads(record.value).get("request_id") in attacks | {str(good.event_id)}

    [done] = [decode(r.value) for r in _of(kafka, Topic.INGEST_COMPLETED.value, completed)]
    assert isinstance(done, IngestCompleted)
    assert done.request_id == good.event_id
    assert done.emitted == 1

    # ingest.requested is a raw hop: its DLQ holds claim checks to the transit store
    transit = ArtifactStore(settings.transit_root)

    def original(record: Any) -> dict[str, Any]:
        headers = {k: v.decode() for k, v in record.headers}
        return json.loads(resolve_dlq_value(record.value, headers, transit))  # type: ignore[no-any-return]

    dead = _of(
        kafka,
        Topic.INGEST_REQUESTED.dlq,
        lambda r: original(r).get("event_id") in attacks,
        at_least=2,
    )
    reasons = {original(r)["event_id"]: {k: v.decode() for k, v in r.headers} for r in dead}
    assert {h["x-llmops-dlq-claim"] for h in reasons.values()} == {"transit"}
    assert not any(b"/etc/hostname" in r.value for r in dead)  # no raw bytes in the DLQ
    assert set(reasons) == attacks
    assert {h["x-llmops-dlq-reason"] for h in reasons.values()} == {"unauthorized"}
    assert reasons[str(unsigned.event_id)]["x-llmops-dlq-error"] == "unsigned"
    assert "is not admin's" in reasons[str(forged.event_id)]["x-llmops-dlq-error"]

    def rejected(record: Any) -> bool:
        event = decode(record.value)
        return (
            isinstance(event, AuditRecorded)
            and not event.allowed
            and (
                event.details.get("consumer") == "ingestion"
                and str(event.details.get("offset"))
                in {h["x-llmops-dlq-offset"] for h in reasons.values()}
            )
        )

    _of(kafka, Topic.AUDIT_RECORDED.value, rejected, at_least=2)
    # nothing was read from the file the forged commands named
    completed_again = asyncio.run(
        read_topic(kafka, Topic.INGEST_COMPLETED.value, count=10**6, timeout=2)
    )
    assert not [r for r in completed_again if json.loads(r.value).get("request_id") in attacks]
