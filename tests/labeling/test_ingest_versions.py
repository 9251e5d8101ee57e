"""Unlabeled versions (`llmops ingest --version`) are the curator's: labeling cuts them.

Ingestion reports the lineage only it knows (source, line, dropped duplicates) in its
``IngestCompleted``; labeling keeps it and writes it into each version's lineage file. The
first test feeds labeling by hand (inline and claim-checked lineage, erasure); the second
runs the real ingestion service in memory and hands its events, anonymized, to labeling.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session
from typer.testing import CliRunner

from services.labeling import datasets_cli, erasure
from services.labeling.adapters.store import LineageRow
from shared.claims import BATCH_MEDIA_TYPE, encode_batch, unpack
from shared.datasets import DatasetManifest, iter_lineage, iter_records, load_manifest
from shared.events import (
    DatasetVersioned,
    ErasureCompleted,
    IngestCompleted,
    IngestRequested,
    RecordsAnonymized,
    RecordsIngested,
)
from shared.events.ingest import FieldMapping, Record, RowLineage, SourceSpec
from shared.events.privacy import AnonymizedRecord
from shared.storage import ArtifactStore
from shared.topics import Topic
from tests.ingestion.files import EXPECTED_KEPT, write_bad_inputs
from tests.ingestion.test_handlers import Service as Ingestion
from tests.ingestion.test_handlers import run_with
from tests.labeling.support import TICKETS, Harness, anonymized, running

pytestmark = pytest.mark.handlers


def kept(rid: str, source: str, line: int) -> RowLineage:
    return RowLineage(record_id=rid, status="kept", source=source, line=line)


def dropped(rid: str, of: str, source: str, line: int, similarity: float = 1.0) -> RowLineage:
    status = "exact_duplicate" if similarity == 1.0 else "near_duplicate"
    return RowLineage(
        record_id=rid,
        status=status,
        source=source,
        line=line,
        duplicate_of=of,
        similarity=similarity,
    )


def version_of(h: Harness, event: DatasetVersioned) -> DatasetManifest:
    return load_manifest(h.runtime.artifacts, event.manifest)


def lineage_by_id(h: Harness, event: DatasetVersioned) -> dict[str, dict[str, Any]]:
    manifest = version_of(h, event)
    return {e["record_id"]: e for e in iter_lineage(h.runtime.artifacts, manifest)}


async def ingest(
    h: Harness, rows: list[tuple[str, str, str]], report: dict[str, Any]
) -> DatasetVersioned:
    """An ingest request asking for a version: request, records, report; its version."""
    request = IngestRequested(dataset="support", cut_version=True)
    await h.publish(request)
    await h.publish(anonymized("support", rows, request_id=request.event_id))
    await h.publish(
        request.caused(
            IngestCompleted,
            dataset="support",
            request_id=request.event_id,
            emitted=len(rows),
            **report,
        )
    )
    return await h.wait(  # type: ignore[no-any-return]
        Topic.DATASET_VERSIONED, lambda e: e.causation_id == request.event_id
    )


async def test_versions_carry_ingestions_lineage_and_erasure_scrubs_it(data_dir: Path) -> None:
    async with running(data_dir) as h:
        first = await ingest(
            h,
            TICKETS[:3],
            {
                "lineage": [
                    kept("rid-t1", "a.jsonl", 1),
                    kept("rid-t2", "a.jsonl", 2),
                    kept("rid-t3", "a.jsonl", 3),
                    dropped("dup-1", "rid-t1", "a.jsonl", 4),
                ]
            },
        )
        lineage = lineage_by_id(h, first)
        assert lineage["rid-t1"] == {
            "record_id": "rid-t1",
            "source_id": "t1",
            "request_id": str(first.causation_id),
            "source": "a.jsonl",
            "line": 1,
            "duplicates": [
                {
                    "record_id": "dup-1",
                    "status": "exact_duplicate",
                    "similarity": 1.0,
                    "source": "a.jsonl",
                    "line": 4,
                }
            ],
        }
        records = list(iter_records(h.runtime.artifacts, version_of(h, first)))
        assert [(r["record_id"], r["source_id"]) for r in records] == [
            ("rid-t1", "t1"),
            ("rid-t2", "t2"),
            ("rid-t3", "t3"),
        ]
        assert set(records[0]) == {"record_id", "source_id", "text", "metadata", "entities"}

        # a large lineage comes by claim check; a later request's near duplicate of an
        # earlier record shows up under that record in the next version
        entries = [kept("rid-t4", "b.jsonl", 1), dropped("dup-2", "rid-t2", "b.jsonl", 2, 0.8)]
        claim = h.runtime.artifacts.put_bytes(encode_batch(entries), BATCH_MEDIA_TYPE)
        second = await ingest(h, TICKETS[3:4], {"lineage_claim": claim})
        assert second.parent == first.version
        lineage = lineage_by_id(h, second)
        assert list(lineage) == ["rid-t1", "rid-t2", "rid-t3", "rid-t4"]
        assert (lineage["rid-t4"]["source"], lineage["rid-t4"]["line"]) == ("b.jsonl", 1)
        assert [
            (d["record_id"], d["status"], d["similarity"]) for d in lineage["rid-t2"]["duplicates"]
        ] == [("dup-2", "near_duplicate", 0.8)]

        with Session(h.runtime.engine) as session:
            answer = erasure.answer(
                session,
                ErasureCompleted(
                    request_id=uuid.uuid4(),
                    subject_ref="subj",
                    service="anonymization",
                    found=True,
                    records=["rid-t1"],
                ),
                "labeling",
            )
            session.commit()
        assert answer is not None
        assert answer.removed["lineage_scrubbed"] == 2  # the record and its duplicate
        assert answer.dataset_versions == sorted([first.version, second.version])
        with Session(h.runtime.engine) as session:
            dup = session.get(LineageRow, "dup-1")
            assert dup is not None
            assert (dup.source, dup.line, dup.duplicate_of) == (None, None, "rid-t1")
        third = await ingest(h, TICKETS[4:5], {"lineage": [kept("rid-t5", "c.jsonl", 1)]})
        assert list(lineage_by_id(h, third)) == ["rid-t2", "rid-t3", "rid-t4", "rid-t5"]

        # a report that comes after the erasure does not bring source and line back
        late = [dropped("dup-3", "rid-t1", "d.jsonl", 7)]
        request = IngestRequested(dataset="support")
        await h.publish(
            request.caused(
                IngestCompleted, dataset="support", request_id=request.event_id, lineage=late
            )
        )
        await h.settled()
        with Session(h.runtime.engine) as session:
            row = session.get(LineageRow, "dup-3")
            assert row is not None
            assert (row.source, row.line) == (None, None)


def fake_anonymized(text: str) -> str:
    return f"<ANON {len(text)} chars>"


def anonymize(ingestion: Ingestion, batch: RecordsIngested) -> RecordsAnonymized:
    """What the anonymization service makes of a batch (texts replaced, transit emptied)."""
    records = unpack(batch.records, batch.claim, ingestion.runtime.transit, Record)
    if batch.claim is not None:
        ingestion.runtime.transit.delete(batch.claim)
    return batch.caused(  # type: ignore[no-any-return]
        RecordsAnonymized,
        dataset=batch.dataset,
        request_id=batch.request_id,
        batch_index=batch.batch_index,
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


async def test_the_real_ingestion_report_gives_labelings_version_its_lineage(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ingestion in memory, then labeling fed its (anonymized) events; one artifact store."""
    files = write_bad_inputs(data_dir / "inbox", huge_mb=5)
    request = IngestRequested(
        dataset="tickets",
        sources=[SourceSpec(uri=str(files["mixed"])), SourceSpec(uri=str(files["ragged"]))],
        mapping=FieldMapping(id_field="id"),
        cut_version=True,
    )
    ingestion = Ingestion(data_dir, claim_bytes=200)  # batches and lineage by claim check

    async def ingest() -> IngestCompleted:
        await ingestion.publish(request)
        (report,) = await ingestion.wait(Topic.INGEST_COMPLETED)
        return report  # type: ignore[no-any-return]

    report = await run_with(ingestion, ingest)
    assert report.lineage_claim is not None
    assert ingestion.events(Topic.DATASET_VERSIONED) == []
    batches: list[RecordsIngested] = ingestion.events(Topic.RECORDS_INGESTED)
    outputs = [anonymize(ingestion, b) for b in batches]

    async with running(data_dir) as h:
        for event in [report, *reversed(outputs)]:  # any order; the request comes last
            await h.publish(event)
        assert h.events(Topic.DATASET_VERSIONED) == []
        await h.publish(request)
        versioned = await h.wait(
            Topic.DATASET_VERSIONED, lambda e: e.causation_id == request.event_id
        )
    assert versioned.records == report.emitted
    manifest = version_of(h, versioned)
    records = list(iter_records(h.runtime.artifacts, manifest))
    # the anonymized text, in the order ingestion emitted it (whatever order it arrived in)
    assert [r["text"] for r in records] == [fake_anonymized(t) for t in EXPECTED_KEPT]
    lineage = {e["source_id"]: e for e in iter_lineage(h.runtime.artifacts, manifest)}
    assert (lineage["t1"]["source"], lineage["t1"]["line"]) == (str(files["mixed"]), 1)
    assert lineage["t1"]["request_id"] == str(request.event_id)
    (dup,) = lineage["t2"]["duplicates"]  # line 10 repeats line 2
    assert (dup["status"], dup["line"], dup["source"]) == (
        "exact_duplicate",
        10,
        str(files["mixed"]),
    )

    # `llmops datasets show tickets --record t2` reads it back from the artifacts alone
    monkeypatch.setattr(
        datasets_cli,
        "_resolve",
        lambda _cfg, _ref: (manifest, ArtifactStore(str(data_dir / "artifacts"))),
    )
    shown = CliRunner().invoke(
        datasets_cli.datasets_app, ["show", "tickets", "--record", "t2", "--json"]
    )
    assert shown.exit_code == 0, shown.output
    (entry,) = json.loads(shown.stdout)["lineage"]
    assert entry["record_id"] == lineage["t2"]["record_id"]
    assert entry["duplicates"][0]["line"] == 10


async def test_a_version_keeps_source_ids_and_metadata(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 8: the user's ticket ids (``--id-field``) and ``--meta`` fields reach the
    version's records and lineage, and `llmops datasets show --record t001` finds the ticket."""
    request = IngestRequested(
        dataset="tickets",
        records=[
            {"id": "t001", "text": "My parcel is late.", "lang": "en", "priority": 2},
            {"id": 2, "text": "Refund me please.", "lang": "en", "priority": None},
            {"id": "t003", "text": "The app crashes on start.", "lang": "de"},
        ],
        mapping=FieldMapping(id_field="id", metadata_fields=["lang", "priority"]),
        cut_version=True,
    )
    ingestion = Ingestion(data_dir)

    async def ingest() -> IngestCompleted:
        await ingestion.publish(request)
        (report,) = await ingestion.wait(Topic.INGEST_COMPLETED)
        return report  # type: ignore[no-any-return]

    report = await run_with(ingestion, ingest)
    outputs = [anonymize(ingestion, b) for b in ingestion.events(Topic.RECORDS_INGESTED)]
    async with running(data_dir) as h:
        for event in [request, *outputs, report]:
            await h.publish(event)
        versioned = await h.wait(
            Topic.DATASET_VERSIONED, lambda e: e.causation_id == request.event_id
        )
    manifest = version_of(h, versioned)
    records = list(iter_records(h.runtime.artifacts, manifest))
    assert [(r["source_id"], r["metadata"]) for r in records] == [
        ("t001", {"lang": "en", "priority": 2}),
        ("2", {"lang": "en", "priority": None}),
        ("t003", {"lang": "de"}),
    ]
    lineage = {e["source_id"]: e for e in iter_lineage(h.runtime.artifacts, manifest)}
    assert set(lineage) == {"t001", "2", "t003"}
    assert (lineage["t001"]["record_id"], lineage["t001"]["line"]) == (records[0]["record_id"], 1)

    monkeypatch.setattr(
        datasets_cli,
        "_resolve",
        lambda _cfg, _ref: (manifest, ArtifactStore(str(data_dir / "artifacts"))),
    )
    shown = CliRunner().invoke(
        datasets_cli.datasets_app, ["show", "tickets", "--record", "t001", "--json"]
    )
    assert shown.exit_code == 0, shown.output
    (entry,) = json.loads(shown.stdout)["lineage"]
    assert (entry["record_id"], entry["source_id"]) == (records[0]["record_id"], "t001")
