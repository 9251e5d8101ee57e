"""Schemathesis against the platform's HTTP APIs, as real processes: whatever a client sends,
no 5xx; and without a valid key, no 2xx (no unauthenticated data)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.support.stack import ServiceProcess, free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def kafka(private_kafka: str) -> str:
    """This module's own broker (see tests/conftest.py: private_kafka)."""
    return private_kafka


ADMIN_KEY = "fuzz-admin-key-0123456789abcdef"
# generous: a slow answer is not what this test looks for (CI runs it on a loaded 2-core box)
CALL_TIMEOUT_S = 60
FUZZ = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)


def _env(kafka: str, data_dir: Path) -> dict[str, str]:
    return {
        "LLMOPS_KAFKA_BOOTSTRAP": kafka,
        "LLMOPS_DATA_DIR": str(data_dir),
        "LLMOPS_ADMIN_KEY": ADMIN_KEY,
        "LLMOPS_LOG_FORMAT": "text",
    }


@pytest.fixture(scope="module")
def audit_url(kafka: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("audit-fuzz")
    service = ServiceProcess("services.audit", _env(kafka, root), root / "audit.log").start()
    yield f"http://127.0.0.1:{service.port}"
    service.stop()


@pytest.fixture(scope="module")
def anonymization_url(kafka: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("anon-fuzz")
    api_port = free_port()
    env = {**_env(kafka, root), "LLMOPS_ANONYMIZATION_API_PORT": str(api_port)}
    service = ServiceProcess("services.anonymization", env, root / "anon.log").start(timeout=180)
    yield f"http://127.0.0.1:{api_port}"
    service.stop()


PUBLIC = {"/healthz", "/metrics"}  # liveness and Prometheus: no data behind them


def _check(case: schemathesis.Case, base_url: str) -> None:
    authorized = case.call(
        base_url=base_url, headers={"X-API-Key": ADMIN_KEY}, timeout=CALL_TIMEOUT_S
    )
    not_a_server_error_or_fail(authorized)
    if case.path in PUBLIC:
        return
    for headers in ({}, {"X-API-Key": "not-a-key"}, {"Authorization": "Bearer nope"}):
        anonymous = case.call(base_url=base_url, headers=headers, timeout=CALL_TIMEOUT_S)
        not_a_server_error_or_fail(anonymous)
        assert anonymous.status_code >= 400, (case.path, headers, anonymous.text[:200])


def not_a_server_error_or_fail(response: schemathesis.Response) -> None:
    assert response.status_code < 500, f"{response.status_code}: {response.text[:300]}"


def fuzz(base_url: str) -> list[str]:
    """Every operation of the service's OpenAPI document, fuzzed; returns what was covered."""
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    covered = []
    for result in schema.get_all_operations():
        operation = result.ok()

        @FUZZ
        @given(case=operation.as_strategy())
        def run(case: schemathesis.Case) -> None:
            _check(case, base_url)

        run()
        covered.append(f"{operation.method.upper()} {operation.path}")
    return covered


def test_audit_api(audit_url: str) -> None:
    assert set(fuzz(audit_url)) >= {"GET /v1/audit", "GET /v1/audit/verify"}


def test_anonymization_api(anonymization_url: str) -> None:
    assert set(fuzz(anonymization_url)) >= {"POST /v1/deanonymize", "POST /v1/erasures"}
