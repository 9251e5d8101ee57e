"""Alembic migrations per service, applied when a service builds its engine.

A chain is a folder of Alembic revision files with its own version table in the service's
database (its schema on PostgreSQL): the bus tables' chain (``shared/bus/migrations``,
table ``alembic_version_bus``) and the service's own (``migrations/`` next to the process
module, table ``alembic_version``, or the ``VERSION_TABLE`` its base revision names when
something else in that database owns ``alembic_version``: Optuna's RDB storage in training's).
All chains share one ``env.py`` (``shared/storage/alembic``).

Two replicas starting at once take turns: a PostgreSQL advisory lock, a file lock on SQLite.
A database created before its chain existed is adopted: when the version table is missing
and every table listed in the base revision's ``ADOPT_IF_EXISTS`` exists, that revision is
stamped instead of run. A process without a chain (an ad-hoc service name in a test) gets
``create_all`` from its caller instead; where a chain exists, it alone makes the schema.

``python -m shared.storage.migrations revision DIR -m MESSAGE`` adds a revision to a chain.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import importlib.util
import logging
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, Engine

ENV_DIR = Path(__file__).with_name("alembic")
BUS_CHAIN = Path(__file__).resolve().parents[1] / "bus" / "migrations"
SERVICE_VERSION_TABLE = "alembic_version"
BUS_VERSION_TABLE = "alembic_version_bus"
logging.getLogger("alembic").setLevel(logging.WARNING)  # a line per revision is noise
_IN_PROCESS = threading.Lock()  # alembic's context and op proxies are process-global


def chain_config(chain: Path, version_table: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(ENV_DIR))
    config.set_main_option("version_locations", str(chain / "versions"))
    config.set_main_option("path_separator", "os")
    config.attributes["version_table"] = version_table
    return config


def module_chain(module: str) -> Path | None:
    """``migrations/`` beside a process module (``services.x`` -> ``services/x/migrations``)."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or spec.origin is None:
        return None
    folder = Path(spec.origin).parent
    chain = folder / "migrations"
    return chain if (chain / "versions").is_dir() else None


@contextlib.contextmanager
def _migration_lock(engine: Engine, connection: Connection, key: str) -> Iterator[None]:
    if engine.dialect.name == "postgresql":
        lock_id = zlib.crc32(key.encode())
        connection.execute(text("SELECT pg_advisory_lock(:k)"), {"k": lock_id})
        connection.commit()
        try:
            yield
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": lock_id})
            connection.commit()
    elif engine.dialect.name == "sqlite" and engine.url.database not in (None, "", ":memory:"):
        with open(f"{engine.url.database}.migrate.lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
    else:
        yield


def _adopt(config: Config, connection: Connection, version_table: str) -> None:
    """Stamp the base revision of a database whose tables predate the chain."""
    current = MigrationContext.configure(
        connection, opts={"version_table": version_table}
    ).get_current_revision()
    if current is not None:
        return
    script = ScriptDirectory.from_config(config)
    base_id = script.get_base()
    base = script.get_revision(base_id) if base_id else None
    adopt = getattr(base.module, "ADOPT_IF_EXISTS", ()) if base else ()
    existing = set(inspect(connection).get_table_names())
    if base is not None and adopt and set(adopt) <= existing:
        command.stamp(config, base.revision)


def upgrade_chain(engine: Engine, chain: Path, version_table: str, lock_key: str) -> str | None:
    """Apply a chain up to head; returns the revision the database is at."""
    logging.getLogger("alembic").setLevel(logging.WARNING)  # a line per revision is noise
    config = chain_config(chain, version_table)
    with (
        _IN_PROCESS,
        engine.connect() as connection,
        _migration_lock(engine, connection, lock_key),
    ):
        config.attributes["connection"] = connection
        _adopt(config, connection, version_table)
        command.upgrade(config, "head")
        connection.commit()
        return MigrationContext.configure(
            connection, opts={"version_table": version_table}
        ).get_current_revision()


def chain_version_table(chain: Path) -> str:
    """The version table of a service chain: ``VERSION_TABLE`` of its base revision, if set.

    A library that keeps its own Alembic history in the service's database (Optuna's RDB
    storage uses ``alembic_version``) would otherwise read the chain's revision as its own
    and refuse it, and the chain would stop on the library's revision.
    """
    script = ScriptDirectory.from_config(chain_config(chain, SERVICE_VERSION_TABLE))
    base_id = script.get_base()
    base = script.get_revision(base_id) if base_id else None
    if base is None:
        return SERVICE_VERSION_TABLE
    return str(getattr(base.module, "VERSION_TABLE", SERVICE_VERSION_TABLE))


def upgrade(engine: Engine, service: str, module: str | None) -> dict[str, str | None]:
    """The bus chain, then the service's chain if it has one; ``{chain: revision}``."""
    applied = {"bus": upgrade_chain(engine, BUS_CHAIN, BUS_VERSION_TABLE, f"{service}:bus")}
    chain = module_chain(module) if module else None
    if chain is not None:
        table = chain_version_table(chain)
        applied[service] = upgrade_chain(engine, chain, table, service)
    return applied


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m shared.storage.migrations")
    sub = parser.add_subparsers(dest="command", required=True)
    revision = sub.add_parser("revision", help="add an empty revision to a chain")
    revision.add_argument("chain", type=Path, help="e.g. services/ingestion/migrations")
    revision.add_argument("-m", "--message", required=True)
    args = parser.parse_args(argv)
    (args.chain / "versions").mkdir(parents=True, exist_ok=True)
    config = chain_config(args.chain, SERVICE_VERSION_TABLE)
    command.revision(config, message=args.message, version_path=str(args.chain / "versions"))


if __name__ == "__main__":
    main()
