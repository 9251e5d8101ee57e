"""The ingestion service's tables: jobs (checkpoints), dedup index, lineage, versions."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy import Column, LargeBinary, Text, delete, func, update
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
    version: str | None = None
    created_at: datetime = Field(default_factory=_now)
    updated_at: datetime = Field(default_factory=_now)


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


class VersionRow(SQLModel, table=True):
    __tablename__ = "ingestion_version"

    version: str = Field(primary_key=True, max_length=64)
    dataset: str = Field(index=True, max_length=200)
    parent: str | None = None
    records: int = 0
    manifest: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    created_at: datetime = Field(default_factory=_now)


class VersionMember(SQLModel, table=True):
    __tablename__ = "ingestion_version_member"

    version: str = Field(primary_key=True, max_length=64)
    record_id: str = Field(primary_key=True, index=True, max_length=64)


class AnonymizedRow(SQLModel, table=True):
    """An anonymized record of a request that waits for its dataset version (no raw text)."""

    __tablename__ = "ingestion_anonymized"

    request_id: str = Field(primary_key=True, max_length=36)
    record_id: str = Field(primary_key=True, max_length=64)
    batch_index: int = 0
    position: int = 0
    record_json: str = Field(sa_column=Column(Text, nullable=False))


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


def duplicates_of(session: Session, record_ids: Sequence[str]) -> dict[str, list[Lineage]]:
    found: dict[str, list[Lineage]] = {}
    for part in _chunks(record_ids):
        for row in session.exec(select(Lineage).where(col(Lineage.duplicate_of).in_(part))):
            found.setdefault(row.duplicate_of or "", []).append(row)
    return found


def erased_ids(session: Session, record_ids: Sequence[str]) -> set[str]:
    erased: set[str] = set()
    for part in _chunks(record_ids):
        erased.update(
            session.exec(
                select(Lineage.record_id).where(
                    col(Lineage.record_id).in_(part), col(Lineage.erased).is_(True)
                )
            )
        )
    return erased


def latest_version(session: Session, dataset: str) -> VersionRow | None:
    return session.exec(
        select(VersionRow)
        .where(VersionRow.dataset == dataset)
        .order_by(col(VersionRow.created_at).desc())
        .limit(1)
    ).first()


def versions_containing(session: Session, record_ids: Sequence[str]) -> list[str]:
    versions: set[str] = set()
    for part in _chunks(record_ids):
        versions.update(
            session.exec(
                select(VersionMember.version).where(col(VersionMember.record_id).in_(part))
            )
        )
    return sorted(versions)


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


def save_anonymized(
    session: Session, request_id: str, batch_index: int, records: Sequence[dict[str, Any]]
) -> None:
    """Keep a batch of anonymized records; a redelivered batch overwrites itself."""
    for position, record in enumerate(records):
        session.merge(
            AnonymizedRow(
                request_id=request_id,
                record_id=str(record["record_id"]),
                batch_index=batch_index,
                position=position,
                record_json=json.dumps(record, ensure_ascii=False),
            )
        )


def count_anonymized(session: Session, request_id: str) -> int:
    return int(
        session.exec(
            select(func.count())
            .select_from(AnonymizedRow)
            .where(AnonymizedRow.request_id == request_id)
        ).one()
    )


def iter_anonymized(session: Session, request_id: str) -> Iterator[dict[str, Any]]:
    """The request's anonymized records in emission order."""
    rows = session.exec(
        select(AnonymizedRow.record_json)
        .where(AnonymizedRow.request_id == request_id)
        .order_by(col(AnonymizedRow.batch_index), col(AnonymizedRow.position))
    )
    for record_json in rows:
        yield json.loads(record_json)


def drop_anonymized(session: Session, request_id: str) -> None:
    session.exec(  # type: ignore[call-overload]
        delete(AnonymizedRow).where(col(AnonymizedRow.request_id) == request_id)
    )
