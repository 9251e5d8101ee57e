"""Labeling's side of erasure, after anonymization has named the subject's records.

The records' text is dropped (the row stays, marked erased, so a late redelivery cannot
bring it back), their tasks leave every queue, their annotations are deleted, the ingest
lineage of them and of their duplicates loses source and line, and the next cut leaves them
out. Versions are immutable: the answer lists the ones (labeled or not) that held them.
"""

from __future__ import annotations

from sqlmodel import Session, col, delete, select

from services.labeling import lineage
from services.labeling.adapters.store import (
    AnnotationRow,
    CutRow,
    LeaseRow,
    ModelAskRow,
    RecordRow,
    SkipRow,
    TaskRow,
)
from shared.events.privacy import ErasureCompleted

ANSWERS_TO = "anonymization"


def answer(session: Session, event: ErasureCompleted, service: str) -> ErasureCompleted | None:
    """Labeling's ErasureCompleted for anonymization's one; None for any other service's."""
    if event.service != ANSWERS_TO:
        return None
    wanted = set(event.records)
    rows = (
        session.exec(select(RecordRow).where(col(RecordRow.record_id).in_(wanted))).all()
        if wanted
        else []
    )
    removed = {"records": 0, "tasks": 0, "annotations": 0, "lineage_scrubbed": 0}
    for row in rows:
        if not row.erased:
            removed["records"] += 1
        row.erased, row.text, row.meta, row.entities = True, "", {}, []
        session.add(row)
    held = sorted({r.record_id for r in rows})
    removed["lineage_scrubbed"] = lineage.scrub(session, sorted(wanted))
    tasks = (
        session.exec(select(TaskRow).where(col(TaskRow.record_id).in_(held))).all() if held else []
    )
    for task in tasks:
        assert task.id is not None
        removed["annotations"] += len(
            session.exec(select(AnnotationRow.id).where(AnnotationRow.task_id == task.id)).all()
        )
        for table in (AnnotationRow, LeaseRow, SkipRow, ModelAskRow):
            session.exec(delete(table).where(col(table.task_id) == task.id))  # type: ignore[attr-defined]
        if task.status != "erased":
            removed["tasks"] += 1
        task.status, task.final_label, task.prefill, task.suggestion = "erased", None, None, None
        session.add(task)
    versions = sorted(
        cut.version for cut in session.exec(select(CutRow)).all() if wanted & set(cut.record_ids)
    )
    return event.caused(  # type: ignore[no-any-return]
        ErasureCompleted,
        request_id=event.request_id,
        subject_ref=event.subject_ref,
        service=service,
        found=bool(held) or removed["lineage_scrubbed"] > 0,
        records=held,
        dataset_versions=versions,
        removed=removed,
    )
