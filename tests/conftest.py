from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.support.stack import ROOT, embedded_kafka
from tests.support.telemetry import in_memory_spans

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Most tests publish hand-built, unsigned commands to one service. Command authority is
# tested where it is the subject (tests/security/test_authority*.py, which turn it on);
# run a module with LLMOPS_REQUIRE_AUTHORITY=true to exercise it through real processes.
os.environ.setdefault("LLMOPS_REQUIRE_AUTHORITY", "false")
# The embedded log's default is durable (a second, in-memory broker beside it carries the
# serving hops). Tests run in memory with one broker, as their shared brokers do, unless the
# log is their subject: tests/backbone/test_down_up.py and the e2e demo run the default
# (``default_embedded_log``).
os.environ.setdefault("LLMOPS_EMBEDDED_LOG", "memory")

PG_URL = os.environ.get("LLMOPS_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@pytest.fixture(scope="session", autouse=True)
def ingestion_roots(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Tests write the files they ingest under pytest's temp dir (or use the repository's):
    the ingestion source policy allows those roots, as an operator would set them. Child
    processes inherit it."""
    roots = os.pathsep.join([str(tmp_path_factory.getbasetemp().resolve()), str(ROOT)])
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(
            "LLMOPS_INGESTION_ALLOWED_ROOTS",
            os.environ.get("LLMOPS_INGESTION_ALLOWED_ROOTS", roots),
        )
        yield


@pytest.fixture(scope="session", autouse=True)
def cli_config_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """`llmops keys create` writes credential files under LLMOPS_CONFIG_DIR (default
    ~/.config/llmops): tests keep them in pytest's temp dir, never in the user's home."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LLMOPS_CONFIG_DIR", str(tmp_path_factory.mktemp("llmops-config")))
        yield


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap address of a real embedded broker shared by the session's tests."""
    with embedded_kafka(tmp_path_factory.mktemp("kafka")) as bootstrap:
        yield bootstrap


@pytest.fixture(scope="module")
def private_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A broker of this module's own. A service that reads its topics from the beginning on the
    session's broker first works through every earlier test's backlog (thousands of records
    for anonymization): minutes of CPU that starve what the test is about."""
    with embedded_kafka(tmp_path_factory.mktemp("private-kafka")) as bootstrap:
        yield bootstrap


@pytest.fixture(scope="module")
def span_exporter() -> InMemorySpanExporter:
    """The spans this process records from the module's start (tests.support.telemetry)."""
    return in_memory_spans()


def _pg_reachable() -> bool:
    try:
        with psycopg.connect(PG_URL.replace("+psycopg", ""), connect_timeout=3):
            return True
    except psycopg.Error:
        return False


@pytest.fixture(scope="session")
def pg_url() -> str:
    """The machine's PostgreSQL. In CI it must be there; elsewhere its absence skips."""
    if not _pg_reachable():
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is not reachable at {PG_URL} (CI must start it)")
        pytest.skip(f"PostgreSQL not reachable at {PG_URL}")
    return PG_URL


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "llmops"
    path.mkdir()
    return path


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[object]:
    """The same test on SQLite and on the machine's PostgreSQL."""
    from tests.support.engines import engine_for_backend

    yield from engine_for_backend(request.param, tmp_path, request)
