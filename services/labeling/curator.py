"""The curator: the records this service holds, and the dataset versions it cuts.

* Every ``RecordsAnonymized`` is kept (labeling owns dataset versions) and becomes tasks of
  the projects watching its dataset.
* Unlabeled versions (``llmops ingest --version``; labeling is the only service that cuts
  them): the request, its report (``IngestCompleted``: how many records were emitted, and
  the lineage only ingestion knows: source, line, dropped duplicates) and its anonymized
  records arrive in any order; whichever comes last cuts the version, once: the parent's
  records minus erased ones plus the request's records, with that lineage.
* Labeled versions: final labels of a project as ``LabeledExample`` records, split
  deterministically and stratified, on demand or every ``cut_every`` final labels.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

from sqlmodel import Session, col, func, select

from services.labeling import lineage, split, stats
from services.labeling.adapters.store import (
    AnnotationRow,
    CutRow,
    IngestWaitRow,
    ProjectRow,
    RecordRow,
    TaskRow,
    latest_cut,
)
from services.labeling.examples import example, stratum
from services.labeling.service import Labeling, spec_of
from shared.bus.store import UnitOfWork
from shared.claims import unpack
from shared.datasets import DatasetManifest, cut_version
from shared.events import AuditRecorded, DatasetVersioned, IngestCompleted, IngestRequested
from shared.events.envelope import ClaimCheck
from shared.events.ingest import RowLineage
from shared.events.privacy import AnonymizedRecord, RecordsAnonymized
from shared.storage import ArtifactStore

SERVICE = "labeling"


class Curator:
    def __init__(self, artifacts: ArtifactStore, labeling: Labeling) -> None:
        self.artifacts = artifacts
        self.labeling = labeling

    # -- records in -------------------------------------------------------------------
    def receive(self, uow: UnitOfWork, event: RecordsAnonymized) -> int:
        """Keep the batch's records, make tasks; returns tasks created."""
        batch = unpack(event.records, event.claim, self.artifacts, AnonymizedRecord)
        records = [r.model_dump(mode="json") for r in batch]
        session = uow.session
        request_id = str(event.request_id) if event.request_id else None
        tasks = 0
        for data in records:
            key = (event.dataset, str(data["record_id"]))
            if session.get(RecordRow, key) is not None:
                continue
            row = RecordRow(
                dataset=event.dataset,
                record_id=key[1],
                text=data.get("text", ""),
                meta=data.get("metadata") or {},
                entities=data.get("entities") or [],
                subjects=data.get("subjects") or [],
                source_id=data.get("source_id"),
                request_id=request_id,
                batch_index=event.batch_index,
            )
            session.add(row)
            session.flush()
            tasks += self.labeling.add_record(uow, row)
        if request_id is not None:
            self.try_ingest_version(uow, request_id)
        return tasks

    # -- unlabeled versions ---------------------------------------------------------------
    def on_ingest_requested(self, uow: UnitOfWork, event: IngestRequested) -> None:
        if not event.cut_version:
            return
        wait = self._wait(uow.session, str(event.event_id), event.dataset)
        wait.request_json = event.model_copy(update={"records": []}).model_dump_json()
        uow.session.add(wait)
        uow.session.flush()
        self.try_ingest_version(uow, wait.request_id)

    def on_ingest_completed(self, uow: UnitOfWork, event: IngestCompleted) -> None:
        """Keep the report's lineage (every request's: a later version may hold its
        records' duplicates) and its count; cut the version if it was the last part."""
        entries = unpack(event.lineage, event.lineage_claim, self.artifacts, RowLineage)
        lineage.save(uow.session, event.dataset, str(event.request_id), entries)
        wait = self._wait(uow.session, str(event.request_id), event.dataset)
        wait.expected, wait.failed = event.emitted, bool(event.failed)
        uow.session.add(wait)
        uow.session.flush()
        self.try_ingest_version(uow, wait.request_id)

    @staticmethod
    def _wait(session: Session, request_id: str, dataset: str) -> IngestWaitRow:
        wait = session.get(IngestWaitRow, request_id, with_for_update=True)
        return wait or IngestWaitRow(request_id=request_id, dataset=dataset, request_json="")

    def try_ingest_version(self, uow: UnitOfWork, request_id: str) -> DatasetVersioned | None:
        session = uow.session
        wait = session.get(IngestWaitRow, request_id, with_for_update=True)
        if wait is None or not wait.request_json or wait.expected is None:
            return None
        if wait.failed or wait.version is not None:
            return None
        held = session.exec(
            select(func.count()).select_from(RecordRow).where(RecordRow.request_id == request_id)
        ).one()
        if held < wait.expected:
            return None
        request = IngestRequested.model_validate_json(wait.request_json)
        versioned = self._cut_unlabeled(uow, request)
        wait.version = versioned.version
        session.add(wait)
        return versioned

    def _cut_unlabeled(self, uow: UnitOfWork, request: IngestRequested) -> DatasetVersioned:
        session = uow.session
        request_id = str(request.event_id)
        parent = latest_cut(session, request.dataset)
        ids = list(parent.record_ids) if parent is not None else []
        mine = session.exec(
            select(RecordRow.record_id)
            .where(RecordRow.request_id == request_id, RecordRow.dataset == request.dataset)
            .order_by(col(RecordRow.batch_index), col(RecordRow.received_at))
        ).all()
        seen = set(ids)
        ids += [rid for rid in mine if rid not in seen]

        def rows() -> Iterator[RecordRow]:
            for rid in ids:
                row = session.get(RecordRow, (request.dataset, rid))
                if row is not None and not row.erased:
                    yield row

        def records() -> Iterator[dict[str, Any]]:
            for row in rows():
                yield {
                    "record_id": row.record_id,
                    "source_id": row.source_id,
                    "text": row.text,
                    "metadata": row.meta,
                    "entities": row.entities,
                }

        created_by = {request_id}
        if parent is not None:
            created_by.update(self._manifest(parent).created_by)
        manifest, claim = cut_version(
            self.artifacts,
            request.dataset,
            records(),
            parent=parent.version if parent else None,
            created_by=created_by,
            lineage=lineage.of_records(session, rows()),
            producer=SERVICE,
        )
        self._remember(session, manifest, claim, project=None)
        return uow.emit(  # type: ignore[return-value]
            request.caused(
                DatasetVersioned,
                event_id=uuid.uuid5(request.event_id, "version"),
                dataset=request.dataset,
                version=manifest.version,
                parent=manifest.parent,
                records=manifest.record_count,
                manifest=claim,
                labeled=False,
            )
        )

    def _manifest(self, cut: CutRow) -> DatasetManifest:
        data = self.artifacts.get_bytes(ClaimCheck.model_validate_json(cut.manifest_claim))
        return DatasetManifest.model_validate_json(data)

    @staticmethod
    def _remember(
        session: Session, manifest: DatasetManifest, claim: ClaimCheck, project: str | None
    ) -> None:
        if session.get(CutRow, manifest.version) is None:
            session.add(
                CutRow(
                    version=manifest.version,
                    dataset=manifest.dataset,
                    project=project,
                    parent=manifest.parent,
                    records=manifest.record_count,
                    labeled=manifest.labeled,
                    record_ids=list(manifest.record_ids),
                    manifest_claim=claim.model_dump_json(),
                )
            )
            session.flush()

    # -- labeled versions -----------------------------------------------------------------
    def maybe_cut(self, uow: UnitOfWork, row: ProjectRow) -> None:
        spec = spec_of(row)
        if spec.cut_every and row.finals_since_cut >= spec.cut_every:
            self.cut_labeled(uow, row.name, actor=f"{SERVICE}:every-{spec.cut_every}")

    def cut_labeled(self, uow: UnitOfWork, project: str, actor: str) -> DatasetVersioned:
        session = uow.session
        row = self.labeling.project(session, project)
        spec = spec_of(row)
        tasks = session.exec(
            select(TaskRow)
            .where(TaskRow.project == project, TaskRow.status == "final")
            .order_by(col(TaskRow.dataset), col(TaskRow.record_id))
        ).all()
        pairs = []
        for task in tasks:
            record = session.get(RecordRow, (task.dataset, task.record_id))
            if record is not None and not record.erased:
                pairs.append((task, record))
        splits = split.assign(
            [(r.record_id, stratum(spec, t)) for t, r in pairs], spec.split, spec.seed
        )
        dataset = f"{project}-labeled"
        parent = latest_cut(session, dataset)
        annotators = sorted(
            set(
                session.exec(
                    select(AnnotationRow.annotator).where(AnnotationRow.project == project)
                ).all()
            )
        )
        facts = stats.project_stats(session, spec)
        details = {
            "project": project,
            "label_schema": spec.model_dump(mode="json", exclude={"rules"}),
            "source_datasets": sorted({t.dataset for t, _r in pairs}),
            "annotators": annotators,
            "provenance": dict(Counter(t.provenance or "human" for t, _r in pairs)),
            "agreement": facts["agreement"],
        }
        manifest, claim = cut_version(
            self.artifacts,
            dataset,
            (example(spec, t, r, splits[r.record_id]) for t, r in pairs),
            parent=parent.version if parent else None,
            lineage=(
                {
                    "record_id": r.record_id,
                    "dataset": r.dataset,
                    "task_id": t.id,
                    "request_id": r.request_id,
                    "provenance": t.provenance,
                    "suggestion_source": t.suggestion_source,
                }
                for t, r in pairs
            ),
            labeled=True,
            producer=SERVICE,
            task=spec.task,
            splits=dict(Counter(splits.values())),
            details=details,
        )
        self._remember(session, manifest, claim, project=project)
        row.finals_since_cut, row.last_version = 0, manifest.version
        session.add(row)
        event = uow.emit(
            DatasetVersioned(
                dataset=dataset,
                version=manifest.version,
                parent=manifest.parent,
                records=manifest.record_count,
                manifest=claim,
                labeled=True,
            )
        )
        uow.emit(
            AuditRecorded(
                action="labeling.cut",
                actor=actor,
                allowed=True,
                target=f"{dataset}@{manifest.version}",
                details={"records": manifest.record_count, "splits": manifest.splits},
            )
        )
        return event  # type: ignore[return-value]
