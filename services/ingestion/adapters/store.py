"""The ingestion service's tables: jobs (checkpoints), dedup index, lineage.

Dataset versions are the curator's (labeling): ingestion keeps no anonymized copies and no
version tables; the lineage travels to labeling in the ``IngestCompleted`` report.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy import Column, LargeBinary, Text, delete, update
from sqlmodel import JSON, Field, Session, SQLModel, col, select

from services.ingestion.domain.dedup import DedupConfig, LSHIndex
from services.ingestion.domain.pipeline import ChunkResult


def _now() -> datetime:
    return datetime.now(UTC)


class IngestJob(SQLModel, table=True):
    """One ingest request and how far it got; committed with every chunk it processes."""

    __tablename__ = "ingestion_job"

    request_id: str = Field(primary_key=True, max_length=36)
    dataset: str = Field(index=True, max_length=200)
    request_json: str = Field(sa_column=Column(Text, nullable=False))
    status: str = Field(default="pending", index=True, max_length=20)
    position: int = 0  # items of the source stream already applied
    batch_index: int = 0
    spool_offset: int = 0
    report: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    created_at: datetime = Field(default_factory=_now)
    updated_at: datetime = Field(default_factory=_now)
    lease_owner: str | None = Field(default=None, max_length=120)  # shared.storage.lease
    lease_until: datetime | None = None


class Fingerprint(SQLModel, table=True):
    __tablename__ = "ingestion_fingerprint"

    dataset: str = Field(primary_key=True, max_length=200)
    fingerprint: str = Field(primary_key=True, max_length=64)
    record_id: str = Field(index=True, max_length=64)


class Signature(SQLModel, table=True):
    __tablename__ = "ingestion_signature"

    record_id: str = Field(primary_key=True, max_length=64)
    dataset: str = Field(index=True, max_length=200)
    scheme: str = Field(max_length=60)  # affine32:num_perm:seed:shingle_size
    signature: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class Lineage(SQLModel, table=True):
    """Where a record came from and what became of it (kept or dropped as whose duplicate)."""

    __tablename__ = "ingestion_lineage"

    record_id: str = Field(primary_key=True, max_length=64)
    dataset: str = Field(index=True, max_length=200)
    request_id: str = Field(index=True, max_length=36)
    status: str = Field(max_length=20)
    source: str | None = Field(default=None, sa_column=Column(Text))
    line: int | None = None
    duplicate_of: str | None = Field(default=None, index=True, max_length=64)
    similarity: float | None = None
    erased: bool = False


def scheme_of(config: DedupConfig) -> str:
    return f"affine32:{config.num_perm}:{config.seed}:{config.shingle_size}"


def load_index(
    session: Session, dataset: str, config: DedupConfig
) -> tuple[dict[str, str], LSHIndex]:
    """The dataset's persistent dedup index, in memory."""
    exact = {
        fp: rid
        for fp, rid in session.exec(
            select(Fingerprint.fingerprint, Fingerprint.record_id).where(
                Fingerprint.dataset == dataset
            )
        )
    }
    lsh = LSHIndex(config)
    rows = session.exec(
        select(Signature.record_id, Signature.signature).where(
            Signature.dataset == dataset, Signature.scheme == scheme_of(config)
        )
    )
    for rid, blob in rows:
        lsh.insert(rid, np.frombuffer(blob, dtype=np.uint32))
    return exact, lsh


def save_chunk(
    session: Session, dataset: str, request_id: str, result: ChunkResult, config: DedupConfig
) -> None:
    scheme = scheme_of(config)
    for fp, rid in result.fingerprints:
        session.add(Fingerprint(dataset=dataset, fingerprint=fp, record_id=rid))
    for rid, sig in result.signatures:
        session.add(
            Signature(record_id=rid, dataset=dataset, scheme=scheme, signature=sig.tobytes())
        )
    for entry in result.lineage:
        session.merge(
            Lineage(
                record_id=entry.record_id,
                dataset=dataset,
                request_id=request_id,
                status=entry.status,
                source=entry.source,
                line=entry.line,
                duplicate_of=entry.duplicate_of,
                similarity=entry.similarity,
            )
        )


def _chunks(items: Sequence[str], size: int = 500) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def lineage_of(session: Session, record_ids: Sequence[str]) -> dict[str, Lineage]:
    found: dict[str, Lineage] = {}
    for part in _chunks(record_ids):
        for row in session.exec(select(Lineage).where(col(Lineage.record_id).in_(part))):
            found[row.record_id] = row
    return found


def request_lineage(session: Session, request_id: str) -> list[Lineage]:
    """Every row of a request that reached dedup (kept or dropped), by source and line."""
    return list(
        session.exec(
            select(Lineage)
            .where(Lineage.request_id == request_id)
            .order_by(col(Lineage.source), col(Lineage.line), col(Lineage.record_id))
        )
    )


def duplicates_of(session: Session, record_ids: Sequence[str]) -> dict[str, list[Lineage]]:
    found: dict[str, list[Lineage]] = {}
    for part in _chunks(record_ids):
        for row in session.exec(select(Lineage).where(col(Lineage.duplicate_of).in_(part))):
            found.setdefault(row.duplicate_of or "", []).append(row)
    return found


def forget(session: Session, record_ids: Sequence[str]) -> dict[str, int]:
    """Remove dedup entries of these records and of their duplicates; scrub lineage."""
    rows = lineage_of(session, record_ids)
    cluster = list(rows) + [
        d.record_id for ds in duplicates_of(session, list(rows)).values() for d in ds
    ]
    removed = {"fingerprints": 0, "minhash_signatures": 0, "lineage_scrubbed": 0}
    for part in _chunks(cluster):
        removed["fingerprints"] += session.exec(  # type: ignore[call-overload]
            delete(Fingerprint).where(col(Fingerprint.record_id).in_(part))
        ).rowcount
        removed["minhash_signatures"] += session.exec(  # type: ignore[call-overload]
            delete(Signature).where(col(Signature.record_id).in_(part))
        ).rowcount
        removed["lineage_scrubbed"] += session.exec(  # type: ignore[call-overload]
            update(Lineage)
            .where(col(Lineage.record_id).in_(part))
            .values(source=None, line=None, erased=True)
        ).rowcount
    return removed
