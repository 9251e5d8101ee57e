"""Ingest lineage, as ingestion reports it: where each row came from, what became of it.

Only ingestion reads the sources and deduplicates, so only it knows a record's source file
and line and the duplicates dropped in its favour. It sends that in its report
(``IngestCompleted.lineage``, or a claim check of it); the curator keeps it here
(``labeling_lineage``) and writes it into the lineage file of every unlabeled version, so
``llmops datasets show NAME --record ID`` needs no database. Erasure scrubs source and line
of the erased records and of their duplicate clusters (the ids stay).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from sqlalchemy import update
from sqlmodel import Session, col, select

from services.labeling.adapters.store import (
    LineageRow,
    RecordRow,
    chunks,
    duplicates_of,
    lineage_of,
)
from shared.events.ingest import RowLineage


def _erased(session: Session, dataset: str, ids: Sequence[str]) -> set[str]:
    erased: set[str] = set()
    for part in chunks(ids):
        erased.update(
            session.exec(
                select(RecordRow.record_id).where(
                    RecordRow.dataset == dataset,
                    col(RecordRow.record_id).in_(part),
                    col(RecordRow.erased).is_(True),
                )
            )
        )
    return erased


def save(session: Session, dataset: str, request_id: str, entries: Sequence[RowLineage]) -> int:
    """Keep a request's lineage; returns rows added. Rows already held are left as they
    are (a redelivered report adds nothing), and rows of records erased meanwhile (or of
    their duplicates) are kept without source and line."""
    ids = [e.record_id for e in entries]
    held = set(lineage_of(session, ids))
    erased = _erased(session, dataset, sorted({*ids, *(e.duplicate_of or "" for e in entries)}))
    added = 0
    for entry in entries:
        if entry.record_id in held:
            continue
        scrub = entry.record_id in erased or entry.duplicate_of in erased
        session.add(
            LineageRow(
                record_id=entry.record_id,
                dataset=dataset,
                request_id=request_id,
                status=entry.status,
                source=None if scrub else entry.source,
                line=None if scrub else entry.line,
                duplicate_of=entry.duplicate_of,
                similarity=entry.similarity,
            )
        )
        held.add(entry.record_id)
        added += 1
    return added


def of_records(session: Session, records: Iterable[RecordRow]) -> Iterator[dict[str, Any]]:
    """A version's lineage entries for its records: source, line, request, duplicates."""
    batch: list[RecordRow] = []
    for record in records:
        batch.append(record)
        if len(batch) == 500:
            yield from _entries(session, batch)
            batch = []
    yield from _entries(session, batch)


def _entries(session: Session, records: list[RecordRow]) -> Iterator[dict[str, Any]]:
    ids = [r.record_id for r in records]
    rows = lineage_of(session, ids)
    dups = duplicates_of(session, ids)
    for record in records:
        row = rows.get(record.record_id)
        yield {
            "record_id": record.record_id,
            "source_id": record.source_id,
            "request_id": record.request_id or (row.request_id if row else None),
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
                for d in dups.get(record.record_id, [])
            ],
        }


def scrub(session: Session, record_ids: Sequence[str]) -> int:
    """Blank source and line of these records and of their duplicates; rows scrubbed."""
    scrubbed = 0
    for part in chunks(record_ids):
        scrubbed += session.exec(  # type: ignore[call-overload]
            update(LineageRow)
            .where(col(LineageRow.record_id).in_(part) | col(LineageRow.duplicate_of).in_(part))
            .values(source=None, line=None)
        ).rowcount
    return scrubbed
