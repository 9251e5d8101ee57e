"""One contract for the Vault port, run on SQLite and on PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import text
from sqlmodel import Session, select

from services.anonymization.adapters.keyfile import MASTER_KEK, VaultKeks
from services.anonymization.adapters.store import SqlVault, SubjectKey, rotate_kek
from services.anonymization.crypto import UnreadableError, open_sealed
from services.anonymization.domain import Anonymizer, Operators, SourceDoc
from services.anonymization.keys import KeyRing
from shared.bus.store import OutboxEntry
from shared.events import AuditRecorded, decode
from shared.storage.db import make_engine
from shared.topics import Topic
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


class KekRotationContract(VaultContract):
    """`llmops keys rotate-kek` (store.rotate_kek) on each backend."""

    def test_rotation_rewraps_every_key_and_retires_the_old_kek(self, session, tmp_path):
        keks = VaultKeks(KEYS, tmp_path / "secrets" / "vault-kek.json")
        vault = SqlVault(session, KEYS, keks)
        vault.save(entries("Alice Johnson and Bob Stone", "Bob Stone alone"), "d")
        alice, bob = KEYS.subject_ref("Alice Johnson"), KEYS.subject_ref("Bob Stone")
        vault.erase(alice, "req-1")
        bob_key = vault.subject_keys({bob})[bob]
        before = session.exec(select(SubjectKey)).all()
        assert [(k.subject_ref, k.kek_id) for k in before] == [(bob, MASTER_KEK)]
        old_wrapped = before[0].wrapped
        session.commit()

        report = rotate_kek(session.get_bind(), keks, actor="cli:admin")

        assert report["rewrapped"] == 1  # Alice has no key left to re-wrap
        assert report["previous"] == [MASTER_KEK]
        assert keks.ids() == [report["kek"]]
        session.expire_all()
        [row] = session.exec(select(SubjectKey)).all()
        assert row.kek_id == report["kek"]
        assert row.wrapped != old_wrapped
        with pytest.raises(UnreadableError):  # the master-derived KEK opens nothing now
            open_sealed(KEYS.kek, row.wrapped, bob.encode())
        # a process that reads the KEK file afresh (another replica) opens everything
        fresh = SqlVault(session, KEYS, VaultKeks(KEYS, keks.path))
        assert fresh.subject_keys({bob})[bob] == bob_key  # so pseudonyms stay the same
        assert KEYS.pseudonym("PERSON", "Bob Stone", subject_key=bob_key) == KEYS.pseudonym(
            "PERSON", "Bob Stone", subject_key=fresh.subject_keys({bob})[bob]
        )
        assert fresh.open_record("r1")["text"] == "Bob Stone alone"
        with pytest.raises(UnreadableError):
            fresh.open_record("r0")
        assert fresh.erased(alice)
        assert session.get(SubjectKey, alice) is None
        # keys made after the rotation are wrapped with the new KEK
        carol = fresh.subject_keys({"c" * 32})
        assert session.get(SubjectKey, "c" * 32).kek_id == report["kek"]
        session.commit()

        again = rotate_kek(session.get_bind(), keks, actor="cli:admin")
        assert again["previous"] == [report["kek"]]
        assert again["retired"] == [report["kek"]]
        assert again["rewrapped"] == 2
        assert keks.ids() == [again["kek"]]
        session.expire_all()
        reread = SqlVault(session, KEYS, VaultKeks(KEYS, keks.path))
        assert reread.subject_keys({bob, "c" * 32}) == {bob: bob_key, "c" * 32: carol["c" * 32]}
        audits = [
            decode(row.value, expected=AuditRecorded)
            for row in session.exec(select(OutboxEntry)).all()
            if row.topic == Topic.AUDIT_RECORDED.value
        ]
        rotations = [a for a in audits if a.action == "vault.kek_rotated"]
        assert [(a.actor, a.details["kek"], a.details["rewrapped"]) for a in rotations] == [
            ("cli:admin", report["kek"], 1),
            ("cli:admin", again["kek"], 2),
        ]

    def test_a_retired_kek_left_in_the_file_is_retired_next_time(self, session, tmp_path):
        """A crash after the new KEK was saved but before the rotation committed leaves an
        unused key in the file; the next rotation deletes it."""
        keks = VaultKeks(KEYS, tmp_path / "kek.json")
        SqlVault(session, KEYS, keks).subject_keys({"a" * 32})
        session.commit()
        orphan, _ = keks.add()
        report = rotate_kek(session.get_bind(), keks, actor="t")
        assert orphan in report["retired"]
        assert keks.ids() == [report["kek"]]
        with pytest.raises(KeyError, match="retired or lost"):
            VaultKeks(KEYS, keks.path).get(orphan)


@pytest.mark.unit
class TestSqliteVault(KekRotationContract):
    @pytest.fixture
    def session(self, tmp_path) -> Iterator[Session]:
        engine = make_engine(f"sqlite:///{tmp_path / 'vault.db'}")
        with Session(engine) as session:
            yield session
        engine.dispose()


@pytest.mark.integration
@pytest.mark.postgres
class TestPostgresVault(KekRotationContract):
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


@pytest.mark.unit
def test_llmops_keys_rotate_kek(tmp_path, monkeypatch) -> None:
    """The command, mounted in the one `keys` group beside the gateway's API keys, rotates
    the vault the service would open (its data dir, its key file)."""
    import json

    from typer.testing import CliRunner

    from services.anonymization.adapters.keyfile import kek_path, load_keyring
    from shared.cli.main import app
    from shared.storage.db import engine_for

    monkeypatch.setenv("LLMOPS_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("LLMOPS_PSEUDONYM_KEY", raising=False)
    monkeypatch.delenv("LLMOPS_DATABASE_URL", raising=False)
    ring = load_keyring(None, tmp_path)  # what the service made at its first start
    url = f"sqlite:///{tmp_path / 'anonymization.db'}"
    engine = engine_for(url, "anonymization", raw_url=None, module="services.anonymization")
    with Session(engine) as session:
        key = SqlVault(session, ring).subject_keys({"s" * 32})["s" * 32]
        session.commit()

    help_text = CliRunner().invoke(app, ["keys", "--help"]).stdout
    assert "rotate-kek" in help_text
    assert "revoke" in help_text  # the gateway's key commands stay in the same group
    result = CliRunner().invoke(app, ["keys", "rotate-kek", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["rewrapped"] == 1
    assert VaultKeks(ring, kek_path(tmp_path)).ids() == [report["kek"]]
    assert oct(kek_path(tmp_path).stat().st_mode & 0o777) == "0o600"
    with Session(engine) as session:
        vault = SqlVault(session, ring, VaultKeks(ring, kek_path(tmp_path)))
        assert vault.subject_keys({"s" * 32}) == {"s" * 32: key}
    engine.dispose()
