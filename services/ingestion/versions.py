"""Finishing a request: the optional unlabeled dataset version, then the report.

The version holds the parent's records (minus erased ones) plus this request's kept
records, spooled while the request ran. Its lineage file says, per record, the source and
line, the request, and the duplicates dropped in its favour.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlmodel import Session, col, select

from services.ingestion.adapters import store
from services.ingestion.domain.pipeline import Report
from shared.bus.store import UnitOfWork
from shared.datasets import DatasetManifest, cut_version, iter_records
from shared.events.ingest import IngestCompleted, IngestRequested
from shared.events.labeling import DatasetVersioned
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


def _lineage(session: Session, ids: list[str]) -> Iterator[dict[str, Any]]:
    for start in range(0, len(ids), 500):
        part = ids[start : start + 500]
        rows = store.lineage_of(session, part)
        dups = store.duplicates_of(session, part)
        for rid in part:
            row = rows.get(rid)
            yield {
                "record_id": rid,
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


def cut_request_version(
    session: Session, artifacts: ArtifactStore, request: IngestRequested, spool: Path | None
) -> DatasetVersioned:
    parent = store.latest_version(session, request.dataset)
    erased = _erased(session, request.dataset)
    ids: list[str] = []
    created_by = {str(request.event_id)}

    def records() -> Iterator[dict[str, Any]]:
        if parent is not None:
            manifest = DatasetManifest.model_validate(parent.manifest)
            created_by.update(manifest.created_by)
            for record in iter_records(artifacts, manifest):
                if record["record_id"] not in erased:
                    ids.append(record["record_id"])
                    yield record
        if spool is not None and spool.exists():
            with spool.open("rb") as lines:
                for line in lines:
                    record = json.loads(line)
                    if record["record_id"] not in erased:
                        ids.append(record["record_id"])
                        yield record

    manifest, claim = cut_version(
        artifacts,
        request.dataset,
        records(),
        parent=parent.version if parent else None,
        created_by=created_by,
        lineage=_lineage(session, ids),
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


def complete_job(
    uow: UnitOfWork,
    artifacts: ArtifactStore,
    request: IngestRequested,
    report: Report,
    spool: Path | None,
    *,
    failed: str | None = None,
) -> IngestCompleted | None:
    """Emit the report (and version) and mark the job done; a no-op when already done."""
    job = uow.session.get(store.IngestJob, str(request.event_id))
    assert job is not None
    if job.status in ("done", "failed"):
        return None
    version = None
    if request.cut_version and failed is None:
        versioned = uow.emit(cut_request_version(uow.session, artifacts, request, spool))
        version = versioned.version  # type: ignore[attr-defined]
    data = report.to_dict()
    completed = uow.emit(
        request.caused(
            IngestCompleted,
            event_id=completed_event_id(request, "completed"),
            dataset=request.dataset,
            request_id=request.event_id,
            dataset_version=version,
            failed=failed,
            **data,
        )
    )
    job.status = "failed" if failed else "done"
    job.version = version
    uow.session.add(job)
    return completed  # type: ignore[return-value]
