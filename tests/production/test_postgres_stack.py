"""The whole embedded stack with every service on PostgreSQL (a schema each, migrated at start)."""

from __future__ import annotations

import importlib
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from alembic.script import ScriptDirectory
from sqlmodel import SQLModel

from shared.plugins import discover
from shared.storage import schema_name
from shared.storage.migrations import (
    BUS_VERSION_TABLE,
    SERVICE_VERSION_TABLE,
    chain_config,
    chain_version_table,
    module_chain,
)
from tests.integration.test_cli import llmops
from tests.production.test_migrations import APPS, CHAINS
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


def _head(chain: Path) -> str | None:
    return ScriptDirectory.from_config(
        chain_config(chain, SERVICE_VERSION_TABLE)
    ).get_current_head()


def test_the_whole_stack_runs_on_postgres(data_dir: Path, database: str, tmp_path: Path) -> None:
    """`llmops up` with every plug-in process on the machine's PostgreSQL: each one migrates
    its own schema at start to its chain's head; records flow ingestion -> anonymization ->
    ingestion; nothing lands in SQLite."""
    specs = [spec for plugin in discover() for spec in plugin.processes]
    env = {
        "LLMOPS_DATA_DIR": str(data_dir),
        "LLMOPS_EMBEDDED_BOOTSTRAP": f"127.0.0.1:{free_port()}",
        "LLMOPS_EMBEDDED_EPHEMERAL_BOOTSTRAP": f"127.0.0.1:{free_port()}",
        "LLMOPS_KAFKA_BOOTSTRAP": "",
        "LLMOPS_DATABASE_URL": database,
        "LLMOPS_ANONYMIZATION_API_PORT": str(free_port()),
        "LLMOPS_STARTUP_TIMEOUT_S": "900",  # nine processes importing torch/vLLM on 2 cores
        **{spec.port_env: str(free_port()) for spec in specs if spec.port_env},
    }
    source = tmp_path / "tickets.jsonl"
    source.write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS))
    up = llmops("up", "--detach", "--timeout", "1100", env=env, timeout=1200)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        ingest = llmops(
            "ingest", str(source), "-d", "pgstack", "--version", "--wait", "--json",
            env=env, timeout=300,
        )  # fmt: skip
        assert ingest.returncode == 0, ingest.stdout + ingest.stderr
    finally:
        down = llmops("down", env=env, timeout=300)
        if (data_dir / "stack.json").exists():  # leave nothing behind, whatever happened
            llmops("down", "--force", env=env, timeout=300)
    assert down.returncode == 0, down.stderr

    # every process ran on PostgreSQL, each in its own migrated schema; nothing on SQLite
    schemas = {
        row[0] for row in _rows(database, "SELECT schema_name FROM information_schema.schemata")
    }
    assert not list(data_dir.glob("*.db"))
    for spec in specs:
        chain = module_chain(spec.module)
        assert chain is not None, spec.module
        (schema,) = {schema_name(spec.name), schema_name(spec.label)} & schemas
        table = chain_version_table(chain)
        assert _rows(database, f"SELECT version_num FROM {schema}.{table}") == [(_head(chain),)]
        assert _rows(database, f"SELECT version_num FROM {schema}.{BUS_VERSION_TABLE}") == [
            ("bus_0001",)
        ]
        tables = {
            row[0]
            for row in _rows(
                database,
                f"SELECT table_name FROM information_schema.tables WHERE table_schema = '{schema}'",
            )
        }
        importlib.import_module(APPS[spec.module])
        ours = {n for n in SQLModel.metadata.tables if n.startswith(CHAINS[spec.module])}
        assert ours | {"bus_inbox", "bus_outbox"} <= tables, (schema, ours - tables)
        assert not {n for n in tables if n.startswith(_other_prefixes(spec.module))}, schema
    # the records went ingestion -> anonymization -> ingestion (versions of anonymized text)
    jobs = _rows(database, "SELECT dataset FROM llmops_ingestion.ingestion_job")
    assert ("pgstack",) in jobs
    members = _rows(database, "SELECT count(*) FROM llmops_ingestion.ingestion_version_member")
    assert members[0][0] == len(TEXTS)
    vaulted = _rows(database, "SELECT count(*) FROM llmops_anonymization.anon_vault_record")
    assert vaulted[0][0] >= 1  # the originals of the personal data found, encrypted
    handled = _rows(database, "SELECT count(*) FROM llmops_anonymization.bus_inbox")
    assert handled[0][0] >= 1  # idempotency keys of the events it applied


def _other_prefixes(module: str) -> tuple[str, ...]:
    """Table prefixes of the other processes (a schema holds its own tables only)."""
    return tuple(prefix for other, prefix in CHAINS.items() if other != module)
