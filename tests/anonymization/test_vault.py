"""One contract for the Vault port, run on SQLite and on PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import text
from sqlmodel import Session

from services.anonymization.adapters.store import SqlVault
from services.anonymization.crypto import UnreadableError
from services.anonymization.domain import Anonymizer, Operators, SourceDoc
from services.anonymization.keys import KeyRing
from shared.storage.db import make_engine
from tests.anonymization.fakes import FakeEngine

KEYS = KeyRing(b"v" * 32)


def entries(*texts: str):
    anonymizer = Anonymizer(
        FakeEngine({"Alice Johnson": "PERSON", "Bob Stone": "PERSON"}),
        Operators(KEYS),
        ["PERSON", "EMAIL_ADDRESS"],
    )
    docs = anonymizer.run([SourceDoc(f"r{i}", t) for i, t in enumerate(texts)])
    return [d.vault for d in docs if d.vault is not None]


class VaultContract:
    @pytest.fixture
    def session(self) -> Iterator[Session]:
        raise NotImplementedError

    def test_sealed_record_opens_until_its_subject_is_erased(self, session):
        vault = SqlVault(session, KEYS)
        vault.save(entries("Alice Johnson and Bob Stone", "Bob Stone alone"), "d")
        assert vault.open_record("r0")["text"] == "Alice Johnson and Bob Stone"
        outcome = vault.erase(KEYS.subject_ref("Alice Johnson"), str(uuid.uuid4()))
        assert outcome.found
        assert outcome.records == ["r0"]
        with pytest.raises(UnreadableError):
            vault.open_record("r0")  # Bob's key no longer opens it either
        assert vault.open_record("r1")["text"] == "Bob Stone alone"
        assert vault.erased(KEYS.subject_ref("alice johnson"))

    def test_lineage_reaches_dataset_and_model_versions(self, session):
        vault = SqlVault(session, KEYS)
        vault.save(entries("Alice Johnson"), "d")
        assert vault.add_dataset_version("d", "v1", ["r0", "r9"]) == 2
        assert vault.add_dataset_version("d", "v1", ["r0"]) == 0  # idempotent
        vault.add_model_version("d", "v1", "m@1")
        vault.add_model_version("d", "v1", "m@1")
        outcome = vault.erase(KEYS.subject_ref("Alice Johnson"), "req")
        assert outcome.dataset_versions == ["d@v1"]
        assert outcome.model_versions == ["m@1"]

    def test_unknown_subject_and_record(self, session):
        vault = SqlVault(session, KEYS)
        assert vault.erase("f" * 32, "req").found is False
        with pytest.raises(KeyError):
            vault.open_record("missing")

    def test_database_never_holds_a_value_in_clear(self, session):
        vault = SqlVault(session, KEYS)
        vault.save(entries("Alice Johnson wrote to alice@example.com"), "d")
        session.commit()
        for table in ("anon_vault_record", "anon_key_wrap", "anon_subject_key"):
            for row in session.connection().execute(text(f"SELECT * FROM {table}")):
                dump = repr(tuple(row)).encode()
                assert b"Alice" not in dump
                assert b"alice@" not in dump


@pytest.mark.unit
class TestSqliteVault(VaultContract):
    @pytest.fixture
    def session(self, tmp_path) -> Iterator[Session]:
        engine = make_engine(f"sqlite:///{tmp_path / 'vault.db'}")
        with Session(engine) as session:
            yield session
        engine.dispose()


@pytest.mark.integration
@pytest.mark.postgres
class TestPostgresVault(VaultContract):
    @pytest.fixture
    def session(self, pg_url) -> Iterator[Session]:
        schema = f"anon_test_{uuid.uuid4().hex[:8]}"
        engine = make_engine(pg_url, schema=schema)
        try:
            with Session(engine) as session:
                yield session
        finally:
            with engine.begin() as conn:
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
            engine.dispose()
