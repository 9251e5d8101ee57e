"""The Vault port on sqlmodel (SQLite or PostgreSQL): sealed records, keys, subject index."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Column, LargeBinary, bindparam, delete, insert, update
from sqlalchemy.engine import Engine
from sqlmodel import Field, Session, SQLModel, col, select

from services.anonymization import crypto
from services.anonymization.adapters.keyfile import MASTER_KEK, VaultKeks
from services.anonymization.domain import VaultEntry
from services.anonymization.keys import KeyRing
from services.anonymization.ports import ErasureOutcome
from shared.bus.store import UnitOfWork
from shared.events import AuditRecorded


def _now() -> datetime:
    return datetime.now(UTC)


class SubjectKey(SQLModel, table=True):
    """One data subject's key, wrapped with a KEK (``kek_id``). Deleting it is the erasure."""

    __tablename__ = "anon_subject_key"
    subject_ref: str = Field(primary_key=True, max_length=80)
    wrapped: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    created_at: datetime = Field(default_factory=_now)
    kek_id: str = Field(default=MASTER_KEK, max_length=32)


class KekState(SQLModel, table=True):
    """The one row naming the current KEK. Writers of subject keys read it FOR SHARE; a
    rotation holds it FOR UPDATE while it re-wraps, so no key is wrapped with a KEK that is
    being retired."""

    __tablename__ = "anon_kek_state"
    id: int = Field(default=1, primary_key=True)
    current: str = Field(default=MASTER_KEK, max_length=32)
    rotated_at: datetime = Field(default_factory=_now)


class ErasedSubject(SQLModel, table=True):
    __tablename__ = "anon_erased_subject"
    subject_ref: str = Field(primary_key=True, max_length=80)
    request_id: str = Field(max_length=36)
    erased_at: datetime = Field(default_factory=_now)


class VaultRecord(SQLModel, table=True):
    """A record's original text and values, sealed under its data key."""

    __tablename__ = "anon_vault_record"
    record_id: str = Field(primary_key=True, max_length=200)
    dataset: str = Field(max_length=300, index=True)
    sealed: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    entity_types: str = Field(default="[]")
    shredded: bool = Field(default=False)
    created_at: datetime = Field(default_factory=_now)


class KeyWrap(SQLModel, table=True):
    """The subject index: a record's data key wrapped with one subject's key."""

    __tablename__ = "anon_key_wrap"
    subject_ref: str = Field(primary_key=True, max_length=80)
    record_id: str = Field(primary_key=True, max_length=200, index=True)
    wrapped: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class KnownValue(SQLModel, table=True):
    """The known-values index: keyed hashes of confidently detected identifying values."""

    __tablename__ = "anon_known_value"
    value_hash: str = Field(primary_key=True, max_length=64)
    entity_type: str = Field(max_length=64)
    subject_ref: str = Field(max_length=80, index=True)


class RecordVersion(SQLModel, table=True):
    __tablename__ = "anon_record_version"
    record_id: str = Field(primary_key=True, max_length=200)
    dataset: str = Field(primary_key=True, max_length=300)
    version: str = Field(primary_key=True, max_length=200)


class VersionModel(SQLModel, table=True):
    __tablename__ = "anon_version_model"
    dataset: str = Field(primary_key=True, max_length=300)
    version: str = Field(primary_key=True, max_length=200)
    model: str = Field(primary_key=True, max_length=300)


def _unwrap(keks: VaultKeks, subject_ref: str, kek_id: str, wrapped: bytes) -> bytes:
    return crypto.open_sealed(keks.get(kek_id), wrapped, subject_ref.encode())


class SqlVault:
    def __init__(self, session: Session, keys: KeyRing, keks: VaultKeks | None = None) -> None:
        self.session = session
        self.keys = keys
        self.keks = keks or VaultKeks(keys)

    def _unwrap(self, row: SubjectKey) -> bytes:
        return _unwrap(self.keks, row.subject_ref, row.kek_id, row.wrapped)

    def _subject_key(self, subject_ref: str) -> bytes | None:
        row = self.session.get(SubjectKey, subject_ref)
        return None if row is None else self._unwrap(row)

    def current_kek(self) -> str:
        """The KEK new subject keys are wrapped with (read FOR SHARE: a rotation waits)."""
        query = select(KekState.current).where(KekState.id == 1).with_for_update(read=True)
        return self.session.exec(query).first() or MASTER_KEK

    def subject_keys(self, subjects: set[str]) -> dict[str, bytes]:
        """Keys of these subjects, created for those seen for the first time (bulk)."""
        rows = self.session.exec(
            select(SubjectKey).where(col(SubjectKey.subject_ref).in_(sorted(subjects)))
        ).all()
        keys = {r.subject_ref: self._unwrap(r) for r in rows}
        fresh = []
        if subjects - keys.keys():
            kek_id = self.current_kek()
            kek = self.keks.get(kek_id)
            for subject in sorted(subjects - keys.keys()):
                keys[subject] = crypto.new_key()
                wrapped = crypto.seal(kek, keys[subject], subject.encode())
                fresh.append(
                    {
                        "subject_ref": subject,
                        "wrapped": wrapped,
                        "created_at": _now(),
                        "kek_id": kek_id,
                    }
                )
        if fresh:
            self.session.execute(insert(SubjectKey), fresh)
        return keys

    def remember(self, values: dict[str, tuple[str, str]]) -> None:
        fresh = set(values) - set(self.lookup(set(values)))
        if fresh:
            rows = [
                {"value_hash": h, "entity_type": values[h][0], "subject_ref": values[h][1]}
                for h in sorted(fresh)
            ]
            self.session.execute(insert(KnownValue), rows)

    def lookup(self, hashes: set[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        ordered = sorted(hashes)
        for start in range(0, len(ordered), 500):
            chunk = ordered[start : start + 500]
            rows = self.session.exec(
                select(KnownValue.value_hash, KnownValue.entity_type).where(
                    col(KnownValue.value_hash).in_(chunk)
                )
            ).all()
            found.update(dict(rows))
        return found

    def save(self, entries: Sequence[VaultEntry], dataset: str) -> None:
        """Seal a batch: a few bulk statements, whatever the batch size."""
        if not entries:
            return
        record_ids = [entry.record_id for entry in entries]
        self.session.exec(delete(KeyWrap).where(col(KeyWrap.record_id).in_(record_ids)))  # type: ignore[call-overload]
        self.session.exec(delete(VaultRecord).where(col(VaultRecord.record_id).in_(record_ids)))  # type: ignore[call-overload]
        keys = self.subject_keys({s for entry in entries for s in entry.subjects})
        rows, wraps = [], []
        for entry in entries:
            rows.append(
                {
                    "record_id": entry.record_id,
                    "dataset": dataset,
                    "sealed": entry.sealed,
                    "shredded": False,
                    "created_at": _now(),
                    "entity_types": json.dumps(entry.entity_types),
                }
            )
            for subject in entry.subjects:
                aad = f"{entry.record_id}|{subject}".encode()
                wrapped = crypto.seal(keys[subject], entry.dek, aad)
                wraps.append(
                    {"subject_ref": subject, "record_id": entry.record_id, "wrapped": wrapped}
                )
        self.session.execute(insert(VaultRecord), rows)
        if wraps:
            self.session.execute(insert(KeyWrap), wraps)

    def erase(self, subject_ref: str, request_id: str) -> ErasureOutcome:
        records = sorted(
            self.session.exec(
                select(KeyWrap.record_id).where(col(KeyWrap.subject_ref) == subject_ref)
            ).all()
        )
        key = self.session.get(SubjectKey, subject_ref)
        versions = self.session.exec(
            select(RecordVersion).where(col(RecordVersion.record_id).in_(records))
        ).all()
        pairs = sorted({(v.dataset, v.version) for v in versions})
        models: set[str] = set()
        for dataset, version in pairs:
            models |= set(
                self.session.exec(
                    select(VersionModel.model).where(
                        VersionModel.dataset == dataset, VersionModel.version == version
                    )
                ).all()
            )
        removed = {"subject_keys": int(key is not None), "key_wraps": 0, "sealed_records": 0}
        if records:
            result = self.session.exec(delete(KeyWrap).where(col(KeyWrap.record_id).in_(records)))  # type: ignore[call-overload]
            removed["key_wraps"] = int(result.rowcount or 0)
            for row in self.session.exec(
                select(VaultRecord).where(col(VaultRecord.record_id).in_(records))
            ).all():
                row.sealed, row.shredded = b"", True
                self.session.add(row)
                removed["sealed_records"] += 1
        if key is not None:
            self.session.delete(key)
        known = self.session.exec(
            delete(KnownValue).where(col(KnownValue.subject_ref) == subject_ref)
        )  # type: ignore[call-overload]
        removed["known_values"] = int(known.rowcount or 0)
        if self.session.get(ErasedSubject, subject_ref) is None:
            self.session.add(ErasedSubject(subject_ref=subject_ref, request_id=request_id))
        self.session.flush()
        return ErasureOutcome(
            found=bool(records) or key is not None,
            records=records,
            dataset_versions=[f"{d}@{v}" for d, v in pairs],
            model_versions=sorted(models),
            removed=removed,
        )

    def erased(self, subject_ref: str) -> bool:
        return self.session.get(ErasedSubject, subject_ref) is not None

    def open_record(self, record_id: str) -> dict[str, Any]:
        row = self.session.get(VaultRecord, record_id)
        if row is None:
            raise KeyError(record_id)
        if row.shredded:
            raise crypto.UnreadableError(f"record {record_id} was erased")
        wrap = self.session.exec(select(KeyWrap).where(KeyWrap.record_id == record_id)).first()
        if wrap is None:
            raise crypto.UnreadableError(f"no subject key opens record {record_id}")
        subject_key = self._subject_key(wrap.subject_ref)
        if subject_key is None:
            raise crypto.UnreadableError(f"the subject key of record {record_id} was erased")
        aad = f"{record_id}|{wrap.subject_ref}".encode()
        dek = crypto.open_sealed(subject_key, wrap.wrapped, aad)
        sealed = crypto.open_sealed(dek, row.sealed, record_id.encode())
        original: dict[str, Any] = json.loads(sealed)
        original["dek"] = dek
        return original

    def field_ids(self, record_id: str) -> list[str]:
        prefix = f"{record_id}#"
        query = select(VaultRecord.record_id).where(
            col(VaultRecord.record_id).startswith(prefix, autoescape=True)
        )
        return sorted(self.session.exec(query).all())

    def add_dataset_version(self, dataset: str, version: str, record_ids: Sequence[str]) -> int:
        existing = set(
            self.session.exec(
                select(RecordVersion.record_id).where(
                    RecordVersion.dataset == dataset, RecordVersion.version == version
                )
            ).all()
        )
        fresh = sorted(set(record_ids) - existing)
        self.session.add_all(
            [RecordVersion(record_id=r, dataset=dataset, version=version) for r in fresh]
        )
        self.session.flush()
        return len(fresh)

    def add_model_version(self, dataset: str, version: str, model: str) -> None:
        if self.session.get(VersionModel, (dataset, version, model)) is None:
            self.session.add(VersionModel(dataset=dataset, version=version, model=model))
            self.session.flush()


def rotate_kek(engine: Engine, keks: VaultKeks, *, actor: str) -> dict[str, Any]:
    """Re-wrap every subject key with a new random KEK, then retire the others.

    1. the new KEK is saved to the KEK file (not current yet: a crash here leaves an unused
       key, deleted by the next rotation);
    2. one transaction locks the current-KEK row, re-wraps every subject key, makes the new
       KEK current and queues the audit event in the outbox: all of it or nothing;
    3. every other KEK is deleted from the file (``master``, derived from the master secret,
       is simply never used again). A crash between 2 and 3 leaves an unused old key in the
       file: running the command again retires it.

    Subject keys themselves do not change, so pseudonyms and sealed records stay as they
    were; erased subjects have no key left to re-wrap and stay erased."""
    new_id, new_key = keks.add()
    with Session(engine) as session:
        state = session.exec(select(KekState).where(KekState.id == 1).with_for_update()).first()
        if state is None:
            state = KekState(id=1, current=MASTER_KEK)
        previous = state.current
        rows = session.exec(
            select(SubjectKey.subject_ref, SubjectKey.kek_id, SubjectKey.wrapped).where(
                col(SubjectKey.kek_id) != new_id
            )
        ).all()
        changes = [
            {
                "ref": ref,
                "rewrapped": crypto.seal(
                    new_key, _unwrap(keks, ref, kek_id, wrapped), ref.encode()
                ),
            }
            for ref, kek_id, wrapped in rows
        ]
        from_keks = sorted({kek_id for _, kek_id, _ in rows} | {previous})
        statement = (
            update(SubjectKey)
            .where(col(SubjectKey.subject_ref) == bindparam("ref"))
            .values(wrapped=bindparam("rewrapped"), kek_id=new_id)
        )
        for start in range(0, len(changes), 1000):
            session.connection().execute(statement, changes[start : start + 1000])
        state.current, state.rotated_at = new_id, _now()
        session.add(state)
        UnitOfWork(session, "anonymization").emit(
            AuditRecorded(
                action="vault.kek_rotated",
                actor=actor[:200],
                allowed=True,
                target="anonymization:vault",
                details={"kek": new_id, "previous": from_keks, "rewrapped": len(changes)},
            )
        )
        session.commit()
    retired = keks.retire_all_but(new_id)
    return {"kek": new_id, "previous": from_keks, "rewrapped": len(changes), "retired": retired}
