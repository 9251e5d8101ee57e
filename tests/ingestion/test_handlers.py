"""The ingestion service in memory: FastStream's TestKafkaBroker, a real SQLite database.

Ingestion reads, cleans, deduplicates and reports; it cuts no dataset versions (labeling,
the curator, does: tests/labeling/test_ingest_versions.py). Its report carries the lineage
only it knows (source, line, dropped duplicates), inline or by claim check.
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
from services.ingestion.plugin import PLUGIN
from shared.claims import decode_batch, encode_batch, unpack
from shared.events import (
    ErasureCompleted,
    Event,
    IngestCompleted,
    IngestRequested,
    RecordsIngested,
    decode,
)
from shared.events.ingest import RowLineage, SourceSpec
from shared.topics import Topic
from tests.ingestion.files import EXPECTED_KEPT, write_bad_inputs

pytestmark = pytest.mark.handlers


class Service:
    def __init__(
        self,
        data_dir: Path,
        database_url: str | None = None,
        *,
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

    def lineage(self, report: IngestCompleted) -> list[RowLineage]:
        return unpack(report.lineage, report.lineage_claim, self.runtime.artifacts, RowLineage)


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
        return report  # type: ignore[no-any-return]

    report = await run_with(service, body)
    batches: list[RecordsIngested] = service.events(Topic.RECORDS_INGESTED)
    ordered = sorted(batches, key=lambda b: b.batch_index)
    texts = [r.text for b in ordered for r in b.records]
    assert texts == EXPECTED_KEPT
    assert all(b.count <= 3 for b in batches)
    assert (report.read, report.emitted, report.exact_duplicates) == (17, 7, 2)
    assert report.malformed == 8
    assert report.batches == len(batches)
    assert report.dataset_version is None
    assert service.events(Topic.DATASET_VERSIONED) == []  # labeling cuts versions
    # the lineage in the report: every kept record and every dropped duplicate, with where
    lineage = {e.record_id: e for e in service.lineage(report)}
    kept = {r.record_id: r for b in ordered for r in b.records}
    assert {rid for rid, e in lineage.items() if e.status == "kept"} == set(kept)
    for rid, record in kept.items():
        assert (lineage[rid].source, lineage[rid].line) == (record.source, record.line)
    dups = [e for e in lineage.values() if e.status == "exact_duplicate"]
    assert sorted((e.source, e.line) for e in dups) == [
        (str(files["mixed"]), 10),
        (str(files["mixed"]), 13),
    ]
    second = ordered[0].records[1]  # line 10 repeats it
    assert any(e.duplicate_of == second.record_id and e.similarity == 1.0 for e in dups)
    assert report.lineage_claim is None  # small: inline


async def test_erasure_answers_with_records_and_no_versions(data_dir: Path) -> None:
    service = Service(data_dir)
    request = IngestRequested(
        dataset="crm",
        records=[{"text": f"customer note number {i} about an order"} for i in range(5)]
        + [{"text": "customer note number 0 about an order"}],
    )

    async def body() -> tuple[RecordsIngested, int]:
        await service.publish(request)
        await service.wait(Topic.INGEST_COMPLETED)
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
    assert reply.dataset_versions == []  # ingestion holds none: labeling's answer lists them
    assert reply.removed == {"fingerprints": 1, "minhash_signatures": 1, "lineage_scrubbed": 2}


async def test_a_large_lineage_travels_by_claim_check_without_text(data_dir: Path) -> None:
    """Batches go through the transit store, the report's lineage through the artifacts."""
    service = Service(data_dir, claim_bytes=64)
    texts = [f"ticket {i} from Jane Roe at jane{i}@example.com about invoice {i}" for i in range(8)]
    request = IngestRequested(dataset="big", records=[{"text": t} for t in texts])

    async def body() -> IngestCompleted:
        await service.publish(request)
        (report,) = await service.wait(Topic.INGEST_COMPLETED)
        return report  # type: ignore[no-any-return]

    report = await run_with(service, body)
    batches: list[RecordsIngested] = service.events(Topic.RECORDS_INGESTED)
    assert batches
    assert all(b.claim is not None and b.records == [] for b in batches)
    assert report.lineage == []
    assert report.lineage_claim is not None
    lineage = service.lineage(report)
    assert [(e.source, e.line, e.status) for e in lineage] == [
        ("inline", i, "kept") for i in range(1, 9)
    ]
    artifacts = data_dir / "artifacts"
    blobs = b"".join(p.read_bytes() for p in artifacts.rglob("*") if p.is_file())
    assert b"Jane Roe" not in blobs  # raw text stays in transit, never in the artifacts
    assert b"jane0@" not in blobs


async def test_a_claim_checked_lineage_is_the_json_of_its_models(data_dir: Path) -> None:
    """The report's lineage is encoded from the table's plain rows, not a model per row:
    the same JSON lines its RowLineage models write, similarities of near duplicates too."""
    service = Service(data_dir, claim_bytes=64)
    base = " ".join(f"word{i}" for i in range(60))
    texts = [base, base, base.replace("word7 ", "other "), "something else entirely"]
    request = IngestRequested(dataset="lineage", records=[{"text": t} for t in texts])

    async def body() -> IngestCompleted:
        await service.publish(request)
        (report,) = await service.wait(Topic.INGEST_COMPLETED)
        return report  # type: ignore[no-any-return]

    report = await run_with(service, body)
    assert report.lineage_claim is not None
    raw = service.runtime.artifacts.get_bytes(report.lineage_claim)
    lineage = decode_batch(raw, RowLineage)
    assert raw == encode_batch(lineage)
    assert [e.status for e in lineage] == ["kept", "exact_duplicate", "near_duplicate", "kept"]
    near = lineage[2]
    assert near.duplicate_of == lineage[0].record_id
    assert near.similarity is not None
    assert 0.6 <= near.similarity < 1


def test_ingestion_no_longer_reads_anonymized_records(data_dir: Path) -> None:
    """Versions are labeling's: ingestion's bus consumes requests and erasure answers only
    (plus the key registry, read by its own subscriber to check user-signed requests)."""
    service = Service(data_dir)
    read = {topic for topics in service.runtime.bus.groups.values() for topic in topics}
    assert read == {Topic.INGEST_REQUESTED.value, Topic.ERASURE_COMPLETED.value}
    assert set(PLUGIN.consumes) == {Topic(t) for t in read} | {Topic.API_KEYS}
    assert Topic.RECORDS_ANONYMIZED not in PLUGIN.consumes
    assert Topic.DATASET_VERSIONED not in PLUGIN.produces
