"""The embedded stack with every service on PostgreSQL (a schema each, migrated at start)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.integration.test_cli import llmops
from tests.support.stack import free_port

pytestmark = [pytest.mark.integration, pytest.mark.postgres, pytest.mark.slow]

TEXTS = [
    "Ticket 1: Alice Martin (alice.martin@example.com) cannot log in since Monday.",
    "Ticket 2: the invoice page shows a blank screen for Bob Stone, phone 415-555-0132.",
    "Ticket 3: please reset the password of carol@example.org, she is locked out.",
    "Ticket 4: exporting a report to CSV times out after thirty seconds every time.",
]


@pytest.fixture
def database(pg_url: str) -> Iterator[str]:
    """A database of its own on the machine's PostgreSQL: parallel tests share no schema."""
    name = f"llmops_stack_{uuid.uuid4().hex[:10]}"
    admin = pg_url.replace("+psycopg", "")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield pg_url.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _rows(url: str, query: str) -> list[tuple[object, ...]]:
    with psycopg.connect(url.replace("+psycopg", "")) as conn:
        return conn.execute(query).fetchall()


def test_ingest_through_ingestion_and_anonymization_on_postgres(
    data_dir: Path, database: str, tmp_path: Path
) -> None:
    env = {
        "LLMOPS_DATA_DIR": str(data_dir),
        "LLMOPS_EMBEDDED_BOOTSTRAP": f"127.0.0.1:{free_port()}",
        "LLMOPS_KAFKA_BOOTSTRAP": "",
        "LLMOPS_DATABASE_URL": database,
        "LLMOPS_INGESTION_PORT": str(free_port()),
        "LLMOPS_ANONYMIZATION_PORT": str(free_port()),
        "LLMOPS_ANONYMIZATION_API_PORT": str(free_port()),
        "LLMOPS_STARTUP_TIMEOUT_S": "500",  # Presidio loads slowly on a busy 2-core machine
    }
    source = tmp_path / "tickets.jsonl"
    source.write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS))
    up = llmops("up", "--detach", "--only", "ingestion,anonymization", env=env, timeout=600)
    assert up.returncode == 0, up.stdout + up.stderr
    try:
        ingest = llmops(
            "ingest", str(source), "-d", "pgstack", "--version", "--wait", "--json",
            env=env, timeout=300,
        )  # fmt: skip
        assert ingest.returncode == 0, ingest.stdout + ingest.stderr
    finally:
        down = llmops("down", env=env, timeout=120)
    assert down.returncode == 0, down.stderr

    # both services ran on PostgreSQL, each in its own migrated schema; nothing on SQLite
    schemas = {
        row[0] for row in _rows(database, "SELECT schema_name FROM information_schema.schemata")
    }
    assert {"llmops_ingestion", "llmops_anonymization"} <= schemas
    assert not list(data_dir.glob("*.db"))
    for schema, head in (
        ("llmops_ingestion", "ingestion_0001"),
        ("llmops_anonymization", "anonymization_0001"),
    ):
        assert _rows(database, f"SELECT version_num FROM {schema}.alembic_version") == [(head,)]
        assert _rows(database, f"SELECT version_num FROM {schema}.alembic_version_bus") == [
            ("bus_0001",)
        ]
    # the records went ingestion -> anonymization -> ingestion (versions of anonymized text)
    jobs = _rows(database, "SELECT dataset FROM llmops_ingestion.ingestion_job")
    assert ("pgstack",) in jobs
    members = _rows(database, "SELECT count(*) FROM llmops_ingestion.ingestion_version_member")
    assert members[0][0] == len(TEXTS)
    vaulted = _rows(database, "SELECT count(*) FROM llmops_anonymization.anon_vault_record")
    assert vaulted[0][0] >= 1  # the originals of the personal data found, encrypted
    handled = _rows(database, "SELECT count(*) FROM llmops_anonymization.bus_inbox")
    assert handled[0][0] >= 1  # idempotency keys of the events it applied
