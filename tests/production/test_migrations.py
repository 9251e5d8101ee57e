"""Alembic chains per service, applied at start, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import importlib
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import MetaData, inspect, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session, SQLModel

from shared.storage import make_engine
from shared.storage.db import create_tables, engine_for, schema_name
from shared.storage.migrations import chain_version_table, module_chain, upgrade_chain

pytestmark = pytest.mark.integration

# process module -> the table prefix its chain owns
CHAINS = {
    "services.ingestion": "ingestion_",
    "services.anonymization": "anon_",
    "services.labeling": "labeling_",
    "services.training": "training_",
    "services.evaluation": "eval_",
    "services.monitoring": "monitoring_",
    "services.audit": "audit_",
    "services.serving.gateway": "gateway_",
    "services.serving.worker": "serving_",
}
APPS = {module: f"{module}.app" for module in CHAINS}

Factory = Callable[[str, str | None], Engine]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def service_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Factory]:
    """engine_for(...) the way build_runtime calls it, on each backend; schemas dropped after."""
    engines: list[Engine] = []
    schemas: list[str] = []
    url = f"sqlite:///{tmp_path / 'svc.db'}"
    if request.param == "postgres":
        url = request.getfixturevalue("pg_url")

    def build(service: str, module: str | None) -> Engine:
        if request.param == "postgres":
            schemas.append(schema_name(service))
        engine = engine_for(url, service, raw_url=url, module=module)
        engines.append(engine)
        return engine

    yield build
    for engine in engines:
        engine.dispose()
    if schemas:
        cleanup = make_engine(url, create=False)
        with cleanup.begin() as conn:
            for schema in set(schemas):
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        cleanup.dispose()


def _name() -> str:
    return f"mig_{uuid.uuid4().hex[:10]}"


def _owned(prefixes: tuple[str, ...]) -> MetaData:
    meta = MetaData()
    for name, table in SQLModel.metadata.tables.items():
        if name.startswith(prefixes):
            table.to_metadata(meta)
    return meta


def _table_of(diff: object) -> str:
    """The table a compare_metadata diff is about (other processes' tables are ignored)."""
    if isinstance(diff, list):  # modify_* diffs come as lists of tuples
        return _table_of(diff[0])
    assert isinstance(diff, tuple)
    target = diff[1]
    if hasattr(target, "table"):  # Index, Constraint
        return str(target.table.name)
    if hasattr(target, "name") and diff[0].endswith("_table"):
        return str(target.name)
    return str(diff[2])  # (op, schema, table, ...)


def _version(engine: Engine, table: str) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(
            conn, opts={"version_table": table}
        ).get_current_revision()


@pytest.mark.parametrize("module", sorted(CHAINS))
def test_chain_builds_exactly_the_models_tables(service_engine: Factory, module: str) -> None:
    importlib.import_module(APPS[module])
    assert module_chain(module) is not None
    engine = service_engine(_name(), module)
    prefixes = (CHAINS[module], "bus_")
    with engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), _owned(prefixes))
    ours = [d for d in diffs if _table_of(d).startswith(prefixes)]
    assert ours == [], ours
    assert _version(engine, "alembic_version_bus") == "bus_0001"
    chain = module_chain(module)
    assert chain is not None
    assert _version(engine, chain_version_table(chain)) is not None


def test_every_process_with_tables_has_a_chain() -> None:
    """A plug-in process whose models declare tables has migrations, and every model table
    belongs to the bus chain or to exactly one process chain (a new service or table
    without a revision fails here)."""
    from shared.plugins import discover

    modules = {spec.module for plugin in discover() for spec in plugin.processes}
    assert modules == set(CHAINS), modules ^ set(CHAINS)
    for module in sorted(modules):
        importlib.import_module(APPS[module])
        assert module_chain(module) is not None, f"{module} has no migrations/ folder"
    platform_tables = {  # tables of test-only services (tests/support) are not the platform's
        str(mapper.class_.__tablename__)
        for mapper in SQLModel._sa_registry.mappers
        if mapper.class_.__module__.startswith(("services.", "shared."))
    }
    assert platform_tables
    for name in sorted(platform_tables):
        owners = [m for m, prefix in CHAINS.items() if name.startswith(prefix)]
        assert name.startswith("bus_") or len(owners) == 1, (name, owners)


@pytest.mark.parametrize("module", sorted(CHAINS))
def test_revisions_alone_create_every_table(tmp_path: Path, module: str) -> None:
    """The chain by itself, with no create_all after it, yields every model table."""
    importlib.import_module(APPS[module])
    chain = module_chain(module)
    assert chain is not None
    engine = make_engine(f"sqlite:///{tmp_path / 'chain.db'}", create=False)
    try:
        upgrade_chain(engine, chain, chain_version_table(chain), "probe")
        tables = set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert tables == set(_owned((CHAINS[module],)).tables) | {chain_version_table(chain)}


def test_the_audit_chain_makes_the_trail_append_only(service_engine: Factory) -> None:
    """The triggers the audit store attaches to create_all come with the chain's table too."""
    importlib.import_module(APPS["services.audit"])
    engine = service_engine(_name(), "services.audit")
    row = {"s": 1, "e": "e1", "o": "t", "p": "p", "a": "a", "u": "u", "x": "x", "h": "h"}
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO audit_entry (seq, event_id, occurred_at, producer, action, actor, "
                "allowed, target, details_json, prev_hash, hash) "
                "VALUES (:s, :e, :o, :p, :a, :u, true, :x, '{}', '', :h)"
            ),
            row,
        )
    for statement in ("UPDATE audit_entry SET actor = 'mallory'", "DELETE FROM audit_entry"):
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
            conn.execute(text(statement))
    with engine.connect() as conn:
        assert conn.execute(text("SELECT actor FROM audit_entry")).all() == [("u",)]


def test_training_and_optuna_share_a_database(
    service_engine: Factory, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Optuna's RDB storage keeps its Alembic history in `alembic_version` of training's
    database: the training chain keeps its own, so each accepts the other on every restart
    (sharing the table, Optuna refused training's revision and the chain Optuna's)."""
    import optuna

    importlib.import_module(APPS["services.training"])
    service = _name()
    url = f"sqlite:///{tmp_path / 'svc.db'}"
    kwargs: dict[str, object] = {}
    if "postgres" in request.node.callspec.id:
        url = request.getfixturevalue("pg_url")
        kwargs["connect_args"] = {"options": f"-csearch_path={schema_name(service)}"}
    for _ in range(2):  # first start, then a restart of both on the same database
        engine = service_engine(service, "services.training")
        storage = optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
        optuna.create_study(storage=storage, study_name=_name())
        storage.engine.dispose()
        assert _version(engine, "alembic_version_training") == "training_0002"
        assert _version(engine, "alembic_version") not in (None, "training_0002")


def test_a_database_from_create_all_is_adopted(service_engine: Factory, tmp_path: Path) -> None:
    importlib.import_module(APPS["services.anonymization"])
    service = _name()
    first = service_engine(service, None)  # the old way: bus chain + create_all only
    with first.begin() as conn:
        conn.execute(text("DROP TABLE alembic_version_bus"))  # as before any chain existed
    create_tables(first)
    again = service_engine(service, "services.anonymization")
    assert _version(again, "alembic_version") == "anonymization_0003"  # adopted, then upgraded
    assert _version(again, "alembic_version_bus") == "bus_0001"


def test_replicas_starting_together_migrate_once(
    service_engine: Factory, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Two processes build the same service's engine at once: each waits its turn."""
    service = _name()
    url = f"sqlite:///{tmp_path / 'svc.db'}"
    if "postgres" in request.node.callspec.id:
        url = request.getfixturevalue("pg_url")
    script = (
        "import sys\n"
        "from shared.storage.db import engine_for\n"
        "engine_for(sys.argv[1], sys.argv[2], raw_url=sys.argv[1], "
        "module='services.serving.gateway')\n"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", script, url, service], stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    results = [(p.wait(120), p.stderr.read().decode() if p.stderr else "") for p in procs]
    assert [code for code, _ in results] == [0, 0], results
    engine = service_engine(service, "services.serving.gateway")  # and drops the schema after
    assert _version(engine, "alembic_version") == "gateway_0001"


def test_a_service_without_migrations_falls_back_to_create_all(service_engine: Factory) -> None:
    importlib.import_module(APPS["services.serving.worker"])
    engine = service_engine(_name(), "shared.settings")  # a module with no migrations folder
    tables = set(inspect(engine).get_table_names())
    assert {"serving_snapshot", "bus_inbox", "bus_outbox", "alembic_version_bus"} <= tables
    assert "alembic_version" not in tables


def test_ingestion_0002_drops_what_moved_to_labeling(tmp_path: Path) -> None:
    """A database at ingestion_0001 loses the anonymized copies and version tables; its
    jobs stay."""
    from alembic import command

    from shared.storage.migrations import SERVICE_VERSION_TABLE, chain_config

    importlib.import_module(APPS["services.ingestion"])
    url = f"sqlite:///{tmp_path / 'old.db'}"
    chain = module_chain("services.ingestion")
    assert chain is not None
    old = make_engine(url, create=False)
    config = chain_config(chain, SERVICE_VERSION_TABLE)
    with old.connect() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "ingestion_0001")
        conn.execute(
            text(
                "INSERT INTO ingestion_job (request_id, dataset, request_json, status, position,"
                " batch_index, spool_offset, version, created_at, updated_at) VALUES ('r1',"
                " 'd', '{}', 'done', 3, 1, 0, 'v1', '2026-01-01', '2026-01-01')"
            )
        )
        conn.commit()
    old.dispose()
    engine = engine_for(url, "ingestion", raw_url=url, module="services.ingestion")
    tables = set(inspect(engine).get_table_names())
    moved = {"ingestion_anonymized", "ingestion_version", "ingestion_version_member"}
    assert not moved & tables
    assert "version" not in {c["name"] for c in inspect(engine).get_columns("ingestion_job")}
    with engine.connect() as conn:
        assert conn.execute(text("SELECT request_id, position FROM ingestion_job")).all() == [
            ("r1", 3)
        ]
    assert _version(engine, "alembic_version") == "ingestion_0003"  # and the job lease after
    assert {"lease_owner", "lease_until"} <= {
        c["name"] for c in inspect(engine).get_columns("ingestion_job")
    }
    engine.dispose()


def test_subject_keys_from_before_kek_rotation_still_open(
    service_engine: Factory, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """A vault at anonymization_0002 (keys wrapped with the master-derived KEK, no KEK
    column) upgrades: its keys are marked ``master``, open, and rotate."""
    from alembic import command

    from services.anonymization import crypto
    from services.anonymization.adapters.keyfile import VaultKeks
    from services.anonymization.adapters.store import SqlVault, rotate_kek
    from services.anonymization.keys import KeyRing
    from shared.storage.migrations import chain_config

    importlib.import_module(APPS["services.anonymization"])
    service = _name()
    url = f"sqlite:///{tmp_path / 'svc.db'}"  # the database service_engine opens
    schema = None
    if "postgres" in request.node.callspec.id:
        url, schema = request.getfixturevalue("pg_url"), schema_name(service)
    old = make_engine(url, schema=schema, create=False)
    if schema:
        with old.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
    config = chain_config(Path("services/anonymization/migrations"), "alembic_version")
    ring, key = KeyRing(b"k" * 32), crypto.new_key()
    with old.connect() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "anonymization_0002")
        conn.execute(
            text(
                "INSERT INTO anon_subject_key (subject_ref, wrapped, created_at) "
                "VALUES ('s1', :w, '2026-01-01 00:00:00')"
            ),
            {"w": crypto.seal(ring.kek, key, b"s1")},
        )
        conn.commit()
    old.dispose()
    engine = service_engine(service, "services.anonymization")
    assert _version(engine, "alembic_version") == "anonymization_0003"
    keks = VaultKeks(ring, tmp_path / "kek.json")
    with Session(engine) as session:
        assert SqlVault(session, ring, keks).subject_keys({"s1"}) == {"s1": key}
    report = rotate_kek(engine, keks, actor="t")
    assert (report["rewrapped"], report["previous"]) == (1, ["master"])
    with Session(engine) as session:
        assert SqlVault(session, ring, VaultKeks(ring, keks.path)).subject_keys({"s1"}) == {
            "s1": key
        }
