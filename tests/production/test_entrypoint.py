"""The image's entrypoint and health check, and the generated init script's shell syntax."""

from __future__ import annotations

import http.server
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest

from shared.deploy import health, run
from tests.production.conftest import COMPOSE_DIR
from tests.support.stack import free_port

pytestmark = pytest.mark.unit


def test_run_resolves_a_label_to_its_module_and_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LLMOPS_ADMIN_PORT", raising=False)
    monkeypatch.delenv("LLMOPS_INGESTION_PORT", raising=False)
    command, env = run.command_for("ingestion")
    assert command == [sys.executable, "-m", "services.ingestion"]
    assert env["LLMOPS_ADMIN_PORT"] == "9101"
    assert env["LLMOPS_PROCESS"] == "ingestion"
    command, _ = run.command_for("serving-gateway")
    assert command[-1] == "services.serving.gateway"


def test_run_rejects_an_unknown_label_naming_the_known_ones() -> None:
    with pytest.raises(SystemExit, match=r"known: .*ingestion"):
        run.command_for("nope")


class _Health(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def admin_port(monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    port = free_port()
    server = http.server.HTTPServer(("127.0.0.1", port), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("LLMOPS_ADMIN_PORT", str(port))
    yield port
    server.shutdown()
    server.server_close()


def test_health_is_zero_only_when_healthz_answers_200(admin_port: int) -> None:
    assert health.main(["ingestion"]) == 0
    _Health.status = 503
    try:
        assert health.main(["ingestion"]) == 1
    finally:
        _Health.status = 200
    assert health.main(["nope"]) == 2


def test_the_label_comes_from_llmops_process_through_settings(
    admin_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without an argument both read the container's label (LLMOPS_PROCESS) via settings."""
    monkeypatch.setenv("LLMOPS_PROCESS", "ingestion")
    assert health.main([]) == 0
    monkeypatch.setenv("LLMOPS_PROCESS", "nope")
    assert health.main([]) == 2
    with pytest.raises(SystemExit, match=r"unknown process 'nope'"):
        run.main([])
    monkeypatch.delenv("LLMOPS_PROCESS")
    with pytest.raises(SystemExit, match="usage"):
        run.main([])


def test_health_is_one_when_nothing_listens(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMOPS_ADMIN_PORT", str(free_port()))
    assert health.main(["ingestion"]) == 1


def test_kafka_scripts_parse_as_bash() -> None:
    for script in ("init.sh", "broker.sh"):
        result = subprocess.run(
            ["bash", "-n", str(COMPOSE_DIR / "kafka" / script)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stderr
