"""The use cases on hand-written fakes of their ports: jobs, checkpoints, erasure answers."""

from __future__ import annotations

import ast
import asyncio
import uuid
from pathlib import Path

import pytest

from services.ingestion.adapters.readers import read_source
from services.ingestion.config import IngestionSettings
from services.ingestion.jobs import MAX_ATTEMPTS, IngestRunner
from shared.events import ErasureCompleted, IngestCompleted, IngestRequested, RecordsIngested
from shared.storage import ArtifactStore
from shared.topics import Topic
from tests.ingestion.fakes import CrashError, FakeErasureStore, FakeJobStore
from tests.ingestion.test_handlers import Service, run_with

pytestmark = pytest.mark.handlers
TEXTS = [f"ticket {i}: the parcel {i} arrived damaged and late" for i in range(9)]


def request(texts: list[str] = TEXTS) -> IngestRequested:
    return IngestRequested(
        dataset="t",
        records=[{"text": t, "id": f"t{i:03}"} for i, t in enumerate(texts)],
        mapping={"id_field": "id"},
    )


def runner(jobs: FakeJobStore, tmp_path: Path) -> IngestRunner:
    settings = IngestionSettings(data_dir=tmp_path, chunk_rows=4, batch_records=3)
    return IngestRunner(
        jobs,
        settings,
        reader=read_source,
        detect_language=None,
        fingerprint_key=b"key",
        transit=ArtifactStore(str(tmp_path / "transit")),
    )


def sent(jobs: FakeJobStore) -> list[tuple[uuid.UUID, list[str | None]]]:
    return [(b.event_id, [r.source_id for r in b.records]) for b in jobs.of(RecordsIngested)]


async def test_an_ingest_request_runs_on_the_job_store_port(data_dir: Path) -> None:
    jobs = FakeJobStore()
    service = Service(data_dir, jobs=jobs, erasures=FakeErasureStore(set()))
    texts = [*TEXTS, TEXTS[0]]  # one exact duplicate

    async def body() -> None:
        await service.publish(request(texts))
        deadline = asyncio.get_running_loop().time() + 30
        while not jobs.of(IngestCompleted):
            assert asyncio.get_running_loop().time() < deadline, "no report"
            await asyncio.sleep(0.05)

    await run_with(service, body)
    (report,) = jobs.of(IngestCompleted)
    assert (report.read, report.emitted, report.exact_duplicates) == (10, 9, 1)
    ids = [sid for _eid, batch in sent(jobs) for sid in batch]
    assert ids == [f"t{i:03}" for i in range(9)]
    assert [len(b) for _eid, b in sent(jobs)] == [3, 1, 3, 1, 1]  # chunks of 4 rows, batches of 3
    statuses = sorted((e.line, e.status) for e in report.lineage)  # the report's lineage
    assert statuses == [(i, "kept") for i in range(1, 10)] + [(10, "exact_duplicate")]


async def test_erasure_is_answered_from_the_erasure_store_port(data_dir: Path) -> None:
    erasures = FakeErasureStore({"r1", "r2"})
    service = Service(data_dir, jobs=FakeJobStore(), erasures=erasures)
    theirs = ErasureCompleted(
        request_id=uuid.uuid4(),
        subject_ref="subj",
        service="anonymization",
        found=True,
        records=["r1", "unknown"],
    )
    other = theirs.model_copy(update={"event_id": uuid.uuid4(), "service": "training"})

    async def body() -> None:
        await service.publish(other)  # not anonymization's: no answer
        await service.publish(theirs)
        await service.wait(Topic.ERASURE_COMPLETED, 3)

    await run_with(service, body)
    (ours,) = [e for e in service.events(Topic.ERASURE_COMPLETED) if e.service == "ingestion"]
    assert (ours.found, ours.records, ours.dataset_versions) == (True, ["r1"], [])
    assert ours.causation_id == theirs.event_id
    assert erasures.forgotten == ["r1"]


def test_a_crashed_job_resumes_at_its_checkpoint_without_duplicates(tmp_path: Path) -> None:
    clean, crashed = FakeJobStore(), FakeJobStore(crash_on_save={2})
    same = request()
    for jobs in (clean, crashed):
        jobs.add(None, same)  # type: ignore[arg-type]
    rid = str(same.event_id)
    runner(clean, tmp_path).run_job(rid)
    with pytest.raises(CrashError):
        runner(crashed, tmp_path).run_job(rid)
    assert crashed.load(rid).position == 4  # the first chunk's checkpoint survived
    runner(crashed, tmp_path).run_job(rid)
    assert sent(crashed) == sent(clean)  # same batches, same deterministic ids, once
    assert crashed.of(IngestCompleted)[0].emitted == clean.of(IngestCompleted)[0].emitted == 9


async def test_a_job_that_keeps_failing_is_failed_with_a_reason(tmp_path: Path) -> None:
    jobs = FakeJobStore(crash_on_save=set(range(1, 10)))
    jobs.add(None, request())  # type: ignore[arg-type]
    work = runner(jobs, tmp_path)
    for _attempt in range(MAX_ATTEMPTS):
        with pytest.raises(CrashError):
            await work._step()
    (report,) = jobs.of(IngestCompleted)
    assert report.failed == "internal error; see logs"
    assert jobs.next_job() is None


def test_the_use_cases_import_no_database_library() -> None:
    """`make lint` keeps them off adapters/ (import-linter); this keeps them off sqlmodel."""
    root = Path(__file__).resolve().parents[2] / "services" / "ingestion"
    for name in ("handlers", "jobs", "erasure"):
        tree = ast.parse((root / f"{name}.py").read_text())
        imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        imported |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert not {m for m in imported if m.split(".")[0] in {"sqlmodel", "sqlalchemy"}}, name


def test_the_sql_store_writes_a_chunk_in_bulk_and_a_chunk_applied_again_updates_it(
    engine: object,
) -> None:
    """The chunk's rows go in as multi-row INSERTs; a lineage row already there (the same
    chunk applied again) is updated, as the merge it replaces did, not a key conflict."""
    import numpy as np
    from sqlmodel import Session, select

    from services.ingestion.adapters import store
    from services.ingestion.domain.dedup import DedupConfig
    from services.ingestion.domain.pipeline import ChunkResult, LineageEntry

    config = DedupConfig()
    lineage = [LineageEntry(f"r{i}", "kept", "f.jsonl", i) for i in range(3)]
    first = ChunkResult(
        lineage=lineage,
        fingerprints=[(f"fp{i}", f"r{i}") for i in range(3)],
        signatures=[(f"r{i}", np.arange(4, dtype=np.uint32) + i) for i in range(3)],
    )
    with Session(engine) as session:  # type: ignore[arg-type]
        store.save_chunk(session, "d", "req", first, config)
        session.commit()
    again = ChunkResult(lineage=[LineageEntry("r1", "near_duplicate", "f.jsonl", 1, "r0", 0.9)])
    with Session(engine) as session:  # type: ignore[arg-type]
        store.save_chunk(session, "d", "req", again, config)
        session.commit()
        rows = {r.record_id: r for r in session.exec(select(store.Lineage))}
        exact, lsh = store.load_index(session, "d", config)
    assert sorted(rows) == ["r0", "r1", "r2"]
    assert (rows["r1"].status, rows["r1"].duplicate_of, rows["r1"].similarity) == (
        "near_duplicate",
        "r0",
        0.9,
    )
    assert rows["r2"].status == "kept"
    assert rows["r2"].line == 2
    assert exact == {"fp0": "r0", "fp1": "r1", "fp2": "r2"}
    assert len(lsh) == 3
