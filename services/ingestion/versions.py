"""Finishing a request: the report, then (when asked for) an unlabeled dataset version.

Raw text never reaches a version. The runner emits the report when the request's sources
are read; the version waits for the anonymized twins of the request's kept records
(``RecordsAnonymized`` from the anonymization service, same request id), kept in
``ingestion_anonymized``. When every emitted record has arrived and the job is done, the
version is cut: the parent's records (minus erased ones) plus this request's anonymized
records. Both sides (the runner finishing, a batch arriving) lock the job row first and then
check, so whichever comes last cuts it, exactly once. Its lineage file says, per record, the
source and line, the request, and the duplicates dropped in its favour.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

from sqlmodel import Session, col, select

from services.ingestion.adapters import store
from services.ingestion.domain.pipeline import Report
from shared.bus.store import UnitOfWork
from shared.claims import unpack
from shared.datasets import DatasetManifest, cut_version, iter_records
from shared.events.ingest import IngestCompleted, IngestRequested
from shared.events.labeling import DatasetVersioned
from shared.events.privacy import AnonymizedRecord, RecordsAnonymized
from shared.storage import ArtifactStore


def completed_event_id(request: IngestRequested, name: str) -> uuid.UUID:
    return uuid.uuid5(request.event_id, name)


def _erased(session: Session, dataset: str) -> set[str]:
    return set(
        session.exec(
            select(store.Lineage.record_id).where(
                store.Lineage.dataset == dataset, col(store.Lineage.erased).is_(True)
            )
        )
    )


def _lineage(
    session: Session, ids: list[str], source_ids: dict[str, str]
) -> Iterator[dict[str, Any]]:
    for start in range(0, len(ids), 500):
        part = ids[start : start + 500]
        rows = store.lineage_of(session, part)
        dups = store.duplicates_of(session, part)
        for rid in part:
            row = rows.get(rid)
            yield {
                "record_id": rid,
                "source_id": source_ids.get(rid),
                "request_id": row.request_id if row else None,
                "source": row.source if row else None,
                "line": row.line if row else None,
                "duplicates": [
                    {
                        "record_id": d.record_id,
                        "status": d.status,
                        "similarity": d.similarity,
                        "source": d.source,
                        "line": d.line,
                    }
                    for d in dups.get(rid, [])
                ],
            }


VERSION_FIELDS = ("record_id", "source_id", "text", "metadata", "entities")


def cut_request_version(
    session: Session, artifacts: ArtifactStore, request: IngestRequested
) -> DatasetVersioned:
    request_id = str(request.event_id)
    parent = store.latest_version(session, request.dataset)
    erased = _erased(session, request.dataset)
    ids: list[str] = []
    source_ids: dict[str, str] = {}  # the source's own ids (ticket t001), for the lineage
    created_by = {request_id}

    def keep(record: dict[str, Any]) -> None:
        ids.append(record["record_id"])
        if record.get("source_id") is not None:
            source_ids[record["record_id"]] = str(record["source_id"])

    def records() -> Iterator[dict[str, Any]]:
        if parent is not None:
            manifest = DatasetManifest.model_validate(parent.manifest)
            created_by.update(manifest.created_by)
            for record in iter_records(artifacts, manifest):
                if record["record_id"] not in erased:
                    keep(record)
                    yield record
        for record in store.iter_anonymized(session, request_id):
            if record["record_id"] not in erased:
                keep(record)
                yield {name: record[name] for name in VERSION_FIELDS if name in record}

    manifest, claim = cut_version(
        artifacts,
        request.dataset,
        records(),
        parent=parent.version if parent else None,
        created_by=created_by,
        lineage=_lineage(session, ids, source_ids),
        producer="ingestion",
    )
    if session.get(store.VersionRow, manifest.version) is None:
        session.add(
            store.VersionRow(
                version=manifest.version,
                dataset=request.dataset,
                parent=manifest.parent,
                records=manifest.record_count,
                manifest=json.loads(manifest.model_dump_json(by_alias=True)),
            )
        )
        for rid in dict.fromkeys(manifest.record_ids):
            session.add(store.VersionMember(version=manifest.version, record_id=rid))
    return request.caused(  # type: ignore[no-any-return]
        DatasetVersioned,
        event_id=completed_event_id(request, "version"),
        dataset=request.dataset,
        version=manifest.version,
        parent=manifest.parent,
        records=manifest.record_count,
        manifest=claim,
        labeled=False,
    )


def _request_of(job: store.IngestJob) -> IngestRequested:
    return IngestRequested.model_validate_json(job.request_json)


def _waits_for_version(job: store.IngestJob, request: IngestRequested) -> bool:
    return request.cut_version and job.status != "failed" and job.version is None


def cut_when_complete(
    uow: UnitOfWork, artifacts: ArtifactStore, job: store.IngestJob, request: IngestRequested
) -> DatasetVersioned | None:
    """Cut the version once the job is done and every emitted record came back anonymized.

    The caller holds the job row's lock (``with_for_update``) and has flushed its writes.
    """
    if job.status != "done" or not _waits_for_version(job, request):
        return None
    expected = int((job.report or {}).get("emitted", 0))
    if store.count_anonymized(uow.session, job.request_id) < expected:
        return None
    versioned = cut_request_version(uow.session, artifacts, request)
    uow.emit(versioned)
    store.drop_anonymized(uow.session, job.request_id)
    job.version = versioned.version
    uow.session.add(job)
    return versioned


def on_records_anonymized(
    uow: UnitOfWork, artifacts: ArtifactStore, event: RecordsAnonymized
) -> DatasetVersioned | None:
    """Keep the anonymized records of a request that waits for its version; cut it when due."""
    if event.request_id is None:
        return None
    session = uow.session
    job = session.get(store.IngestJob, str(event.request_id), with_for_update=True)
    if job is None:
        return None  # another service's records, or a request this service never had
    request = _request_of(job)
    if not _waits_for_version(job, request):
        return None
    batch = unpack(event.records, event.claim, artifacts, AnonymizedRecord)
    records = [r.model_dump(mode="json") for r in batch]
    store.save_anonymized(session, job.request_id, event.batch_index, records)
    session.flush()
    session.refresh(job)  # the runner may have finished meanwhile (SQLite has no row locks)
    return cut_when_complete(uow, artifacts, job, request)


def complete_job(
    uow: UnitOfWork,
    artifacts: ArtifactStore,
    request: IngestRequested,
    report: Report,
    *,
    failed: str | None = None,
) -> IngestCompleted | None:
    """Emit the report, mark the job done, and cut the version if nothing is missing.

    A no-op when already done. The version usually comes later, from the last
    ``RecordsAnonymized`` of the request: the report never names it.
    """
    job = uow.session.get(store.IngestJob, str(request.event_id), with_for_update=True)
    assert job is not None
    if job.status in ("done", "failed"):
        return None
    completed = uow.emit(
        request.caused(
            IngestCompleted,
            event_id=completed_event_id(request, "completed"),
            dataset=request.dataset,
            request_id=request.event_id,
            dataset_version=None,
            failed=failed,
            **report.to_dict(),
        )
    )
    job.status = "failed" if failed else "done"
    job.report = report.to_dict()
    if request.records:  # inline raw text was needed to run the job, not afterwards
        job.request_json = request.model_copy(update={"records": []}).model_dump_json()
    uow.session.add(job)
    if failed:
        store.drop_anonymized(uow.session, job.request_id)
    uow.session.flush()
    cut_when_complete(uow, artifacts, job, request)
    return completed  # type: ignore[return-value]
