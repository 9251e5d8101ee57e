"""The ingestion service in memory: FastStream's TestKafkaBroker, a real SQLite database.

A fake anonymization feed answers every RecordsIngested with a RecordsAnonymized, as the
anonymization service does (reading claim-checked batches from the transit store and
deleting them), so versions are cut from what it sends back.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest
from faststream.kafka import TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage

from services.ingestion.app import build
from services.ingestion.config import IngestionSettings
from shared.datasets import iter_lineage, iter_records, load_manifest
from shared.events import (
    DatasetVersioned,
    ErasureCompleted,
    Event,
    IngestCompleted,
    IngestRequested,
    RecordsAnonymized,
    RecordsIngested,
    decode,
)
from shared.events.ingest import FieldMapping, Record, SourceSpec
from shared.events.privacy import AnonymizedRecord
from shared.topics import Topic
from tests.ingestion.files import EXPECTED_KEPT, write_bad_inputs

pytestmark = pytest.mark.handlers


def fake_anonymized(text: str) -> str:
    return f"<ANON {len(text)} chars>"


class Service:
    def __init__(
        self,
        data_dir: Path,
        database_url: str | None = None,
        *,
        anonymize: bool = True,
        jobs: Any = None,
        erasures: Any = None,
        **kw: Any,
    ) -> None:
        settings = IngestionSettings(
            data_dir=data_dir, chunk_rows=4, batch_records=3, database_url=database_url, **kw
        )
        self.runtime, _app = build(settings, jobs=jobs, erasures=erasures)
        self.seen: dict[str, list[Event]] = {}
        for topic in (
            Topic.RECORDS_INGESTED,
            Topic.INGEST_COMPLETED,
            Topic.ERASURE_COMPLETED,
            Topic.DATASET_VERSIONED,
        ):
            self._collect(topic)
        self.held: list[RecordsAnonymized] = []
        self.hold = False  # keep the anonymized batches back until release()
        if anonymize:
            self.runtime.broker.subscriber(
                Topic.RECORDS_INGESTED.value, group_id="fake-anonymization"
            )(self._anonymize)

    async def _anonymize(self, message: KafkaMessage) -> None:
        """The fake anonymization service: the same event shape, texts replaced."""
        event = decode(message.body, expected=RecordsIngested)
        records = list(event.records)
        if event.claim is not None:
            body = self.runtime.transit.get_bytes(event.claim).decode()
            records = [Record.model_validate_json(line) for line in body.splitlines()]
            self.runtime.transit.delete(event.claim)
        out = event.caused(
            RecordsAnonymized,
            dataset=event.dataset,
            request_id=event.request_id,
            batch_index=event.batch_index,
            records=[
                AnonymizedRecord(
                    record_id=r.record_id,
                    text=fake_anonymized(r.text),
                    metadata=r.metadata,
                    source_id=r.source_id,
                )
                for r in records
            ],
            count=len(records),
        )
        if self.hold:
            self.held.append(out)
        else:
            await self.publish(out)

    async def release(self) -> None:
        self.hold = False
        for event in self.held:
            await self.publish(event)
        self.held = []

    def _collect(self, topic: Topic) -> None:
        async def collect(message: KafkaMessage) -> None:
            self.seen.setdefault(topic.value, []).append(decode(message.body))

        self.runtime.broker.subscriber(topic.value, group_id=f"test-{topic.name}")(collect)

    def events(self, topic: Topic) -> list[Any]:
        return self.seen.get(topic.value, [])

    async def publish(self, event: Event) -> None:
        await self.runtime.broker.publish(event.to_bytes(), Topic.for_event(event).value)

    async def wait(self, topic: Topic, count: int = 1, timeout: float = 30) -> list[Any]:
        deadline = asyncio.get_running_loop().time() + timeout
        while len(self.events(topic)) < count:
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"{topic}: {len(self.events(topic))} of {count}")
            await asyncio.sleep(0.05)
        return self.events(topic)


async def run_with(service: Service, body: Any) -> Any:
    async with TestKafkaBroker(service.runtime.broker):
        runner = service.runtime.state["runner"]
        await service.runtime.bus.start()
        await runner.start()
        try:
            return await body()
        finally:
            await runner.stop()
            await service.runtime.bus.stop()


async def test_bad_inputs_are_reported_and_good_records_flow(data_dir: Path) -> None:
    await bad_inputs_flow(Service(data_dir), data_dir, "tickets")


@pytest.mark.postgres
async def test_bad_inputs_flow_on_postgres(data_dir: Path, pg_url: str) -> None:
    await bad_inputs_flow(Service(data_dir, pg_url), data_dir, f"tickets-{uuid.uuid4().hex}")


async def test_invalid_overrides_fail_the_request_with_a_reason(data_dir: Path) -> None:
    service = Service(data_dir)
    request = IngestRequested(
        dataset="x", records=[{"text": "fine"}], cleaning={"min_chars": -3, "dedup": {"nope": 1}}
    )

    async def body() -> IngestCompleted:
        await service.publish(request)
        (report,) = await service.wait(Topic.INGEST_COMPLETED)
        return report  # type: ignore[no-any-return]

    report = await run_with(service, body)
    assert report.failed is not None
    assert "min_chars" in report.failed
    assert report.emitted == 0
    assert service.events(Topic.RECORDS_INGESTED) == []


async def bad_inputs_flow(service: Service, data_dir: Path, dataset: str) -> None:
    files = write_bad_inputs(data_dir / "inbox", huge_mb=5)  # always allowed
    request = IngestRequested(
        dataset=dataset,
        sources=[
            SourceSpec(uri=str(files[k])) for k in ("mixed", "empty", "binary", "ragged", "missing")
        ],
        cut_version=True,
    )

    async def body() -> IngestCompleted:
        await service.publish(request)
        (report,) = await service.wait(Topic.INGEST_COMPLETED)
        await service.wait(Topic.DATASET_VERSIONED)
        return report  # type: ignore[no-any-return]

    report = await run_with(service, body)
    batches: list[RecordsIngested] = service.events(Topic.RECORDS_INGESTED)
    texts = [r.text for b in sorted(batches, key=lambda b: b.batch_index) for r in b.records]
    assert texts == EXPECTED_KEPT
    assert all(b.count <= 3 for b in batches)
    assert (report.read, report.emitted, report.exact_duplicates) == (17, 7, 2)
    assert report.malformed == 8
    assert report.batches == len(batches)
    assert report.dataset_version is None  # the version follows, from anonymized records
    (versioned,) = service.events(Topic.DATASET_VERSIONED)
    assert versioned.causation_id == request.event_id
    assert versioned.records == 7
    records = version_records(service, versioned)
    assert [r["text"] for r in records] == [fake_anonymized(t) for t in EXPECTED_KEPT]
    assert not (data_dir / "ingestion" / "spool").exists()


async def test_erasure_answers_with_records_and_versions(data_dir: Path) -> None:
    service = Service(data_dir)
    request = IngestRequested(
        dataset="crm",
        records=[{"text": f"customer note number {i} about an order"} for i in range(5)]
        + [{"text": "customer note number 0 about an order"}],
        cut_version=True,
    )

    async def body() -> tuple[RecordsIngested, int]:
        await service.publish(request)
        await service.wait(Topic.INGEST_COMPLETED)
        await service.wait(Topic.DATASET_VERSIONED)
        first = service.events(Topic.RECORDS_INGESTED)[0]
        erasure = ErasureCompleted(
            request_id=uuid.uuid4(),
            subject_ref="subj-1",
            service="anonymization",
            found=True,
            records=[first.records[0].record_id, "unknown-id"],
        )
        await service.publish(erasure)
        await service.wait(Topic.ERASURE_COMPLETED, 2)  # anonymization's, then ours
        await asyncio.sleep(0.5)  # ours must not answer itself
        return first, len(service.events(Topic.ERASURE_COMPLETED))

    first, total = await run_with(service, body)
    assert total == 2
    ours = [e for e in service.events(Topic.ERASURE_COMPLETED) if e.service == "ingestion"]
    assert len(ours) == 1
    reply = ours[0]
    assert reply.found
    assert reply.records == [first.records[0].record_id]
    version = service.events(Topic.DATASET_VERSIONED)[0].version
    assert reply.dataset_versions == [version]
    assert reply.removed["fingerprints"] == 1
    assert reply.removed["lineage_scrubbed"] == 2  # the record and its exact duplicate


def version_records(service: Service, versioned: DatasetVersioned) -> list[dict[str, Any]]:
    artifacts = service.runtime.artifacts
    return list(iter_records(artifacts, load_manifest(artifacts, versioned.manifest)))


async def test_version_waits_for_every_anonymized_record(data_dir: Path) -> None:
    """Large batches go through the transit store; the version is cut from anonymized text."""
    service = Service(data_dir, claim_bytes=64)
    texts = [f"ticket {i} from Jane Roe at jane{i}@example.com about invoice {i}" for i in range(8)]
    request = IngestRequested(dataset="big", records=[{"text": t} for t in texts], cut_version=True)
    service.hold = True

    async def body() -> IngestCompleted:
        await service.publish(request)
        (report,) = await service.wait(Topic.INGEST_COMPLETED)
        await asyncio.sleep(0.3)
        assert service.events(Topic.DATASET_VERSIONED) == []  # nothing anonymized yet
        assert service.held
        await service.release()
        await service.wait(Topic.DATASET_VERSIONED)
        return report  # type: ignore[no-any-return]

    report = await run_with(service, body)
    batches: list[RecordsIngested] = service.events(Topic.RECORDS_INGESTED)
    assert batches
    assert all(b.claim is not None and b.records == [] for b in batches)
    for batch in batches:  # read once by the (fake) anonymization service, then deleted
        assert batch.claim is not None
        assert not service.runtime.transit.exists(batch.claim)
        assert not service.runtime.artifacts.exists(batch.claim)
    (versioned,) = service.events(Topic.DATASET_VERSIONED)
    assert versioned.records == report.emitted == 8
    records = version_records(service, versioned)
    assert [r["text"] for r in records] == [fake_anonymized(t) for t in texts]
    stores = [data_dir / "transit", data_dir / "artifacts"]
    blobs = b"".join(p.read_bytes() for d in stores for p in d.rglob("*") if p.is_file())
    assert b"Jane Roe" not in blobs  # no raw text left in either store
    assert b"jane0@" not in blobs


async def test_no_version_without_every_record_and_none_when_not_asked(data_dir: Path) -> None:
    service = Service(data_dir)
    rows = [{"text": f"note {i} is fine"} for i in range(4)]
    asked = IngestRequested(dataset="d", records=rows, cut_version=True)
    not_asked = IngestRequested(dataset="e", records=rows)
    service.hold = True

    async def body() -> None:
        await service.publish(asked)
        await service.wait(Topic.INGEST_COMPLETED)
        assert len(service.held) == 2
        await service.publish(service.held[0])  # the second batch never comes back
        service.held = []
        service.hold = False
        await service.publish(not_asked)
        await service.wait(Topic.INGEST_COMPLETED, 2)
        await asyncio.sleep(0.5)

    await run_with(service, body)
    assert service.events(Topic.DATASET_VERSIONED) == []


async def test_a_version_keeps_source_ids_and_metadata(data_dir: Path) -> None:
    """The user's ticket id and --meta fields reach the version's records and lineage."""
    service = Service(data_dir)
    mapping = FieldMapping(id_field="id", metadata_fields=["lang", "priority"])
    first = IngestRequested(
        dataset="tickets",
        records=[
            {"id": "t001", "text": "My parcel is late.", "lang": "en", "priority": 2},
            {"id": 2, "text": "Refund me please.", "lang": "en", "priority": None},
        ],
        mapping=mapping,
        cut_version=True,
    )
    second = IngestRequested(
        dataset="tickets",
        records=[{"id": "t003", "text": "The app crashes on start.", "lang": "de"}],
        mapping=mapping,
        cut_version=True,
    )

    async def body() -> None:
        await service.publish(first)
        await service.wait(Topic.DATASET_VERSIONED)
        await service.publish(second)
        await service.wait(Topic.DATASET_VERSIONED, 2)

    await run_with(service, body)
    versioned = service.events(Topic.DATASET_VERSIONED)[-1]
    records = version_records(service, versioned)
    assert [(r["source_id"], r["metadata"]) for r in records] == [
        ("t001", {"lang": "en", "priority": 2}),
        ("2", {"lang": "en", "priority": None}),
        ("t003", {"lang": "de"}),
    ]
    manifest = load_manifest(service.runtime.artifacts, versioned.manifest)
    lineage = {e["source_id"]: e for e in iter_lineage(service.runtime.artifacts, manifest)}
    assert set(lineage) == {"t001", "2", "t003"}
    assert lineage["t001"]["record_id"] == records[0]["record_id"]
    assert lineage["t001"]["line"] == 1
