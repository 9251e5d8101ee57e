"""Schemathesis against every HTTP API of the platform (gateway, anonymization, labeling,
evaluation, monitoring, audit), as real processes: whatever a client sends, no 5xx; and
without a valid key, no 2xx (no unauthenticated data), except on the operations each API
serves keyless by design, listed here (``OPEN``): health, metrics and static files
(docs/security.md). A new operation needs a key unless it is added there.

The gateway runs without a serving worker: its documented 503 ``no_worker`` is the one 5xx
it may answer (a completion that could be served waits for a worker; test_gateway_* cover
that)."""

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
    env = {
        **_env(kafka, root),
        "LLMOPS_ANONYMIZATION_API_PORT": str(api_port),
        "LLMOPS_ANONYMIZATION_API_RATE_PER_MINUTE": "1000000",  # the fuzzer is not throttled
    }
    service = ServiceProcess("services.anonymization", env, root / "anon.log").start(timeout=180)
    yield f"http://127.0.0.1:{api_port}"
    service.stop()


def _service(module: str, kafka: str, root: Path, timeout: float, **env: str) -> ServiceProcess:
    process = ServiceProcess(module, {**_env(kafka, root), **env}, root / "service.log")
    return process.start(timeout=timeout)


@pytest.fixture(scope="module")
def gateway_url(kafka: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    service = _service("services.serving.gateway", kafka, tmp_path_factory.mktemp("gw-fuzz"), 90)
    yield f"http://127.0.0.1:{service.port}"
    service.stop()


@pytest.fixture(scope="module")
def labeling_url(kafka: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("labeling-fuzz")
    service = _service("services.labeling", kafka, root, 120)
    yield f"http://127.0.0.1:{service.port}"
    service.stop()


@pytest.fixture(scope="module")
def evaluation_url(kafka: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("evaluation-fuzz")
    service = _service("services.evaluation", kafka, root, 120)
    yield f"http://127.0.0.1:{service.port}"
    service.stop()


@pytest.fixture(scope="module")
def monitoring_url(kafka: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("monitoring-fuzz")
    service = _service(
        "services.monitoring", kafka, root, 180, LLMOPS_MONITORING_EMBEDDINGS="false"
    )
    yield f"http://127.0.0.1:{service.port}"
    service.stop()


# liveness and Prometheus on every service: no data behind them
PUBLIC = {"GET /healthz", "GET /metrics"}
OPEN = {
    # the charting script; the pages and every read need a key of role viewer or above
    "monitoring": PUBLIC | {"GET /static/plotly.min.js"},
    "evaluation": PUBLIC | {"GET /v1/registry/static/plotly.min.js"},
}
ALLOWED_5XX = {"no_worker"}  # the gateway without a serving worker (module docstring)


def _check(case: schemathesis.Case, base_url: str, open_: set[str]) -> None:
    authorized = case.call(
        base_url=base_url, headers={"X-API-Key": ADMIN_KEY}, timeout=CALL_TIMEOUT_S
    )
    not_a_server_error_or_fail(authorized)
    if f"{case.method.upper()} {case.path}" in open_:
        return
    for headers in ({}, {"X-API-Key": "not-a-key"}, {"Authorization": "Bearer nope"}):
        anonymous = case.call(base_url=base_url, headers=headers, timeout=CALL_TIMEOUT_S)
        not_a_server_error_or_fail(anonymous)
        assert anonymous.status_code >= 400, (case.path, headers, anonymous.text[:200])


def not_a_server_error_or_fail(response: schemathesis.Response) -> None:
    if response.status_code == 503 and _error_code(response) in ALLOWED_5XX:
        return
    assert response.status_code < 500, f"{response.status_code}: {response.text[:300]}"


def _error_code(response: schemathesis.Response) -> str | None:
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        return None
    return error.get("code") if isinstance(error, dict) else None


def fuzz(base_url: str, open_: set[str] = PUBLIC) -> list[str]:
    """Every operation of the service's OpenAPI document, fuzzed; returns what was covered."""
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    covered = []
    for result in schema.get_all_operations():
        operation = result.ok()

        @FUZZ
        @given(case=operation.as_strategy())
        def run(case: schemathesis.Case) -> None:
            _check(case, base_url, open_)

        run()
        covered.append(f"{operation.method.upper()} {operation.path}")
    return covered


def test_audit_api(audit_url: str) -> None:
    assert set(fuzz(audit_url)) >= {"GET /v1/audit", "GET /v1/audit/verify"}


def test_anonymization_api(anonymization_url: str) -> None:
    assert set(fuzz(anonymization_url)) >= {"POST /v1/deanonymize", "POST /v1/erasures"}


def test_gateway_api(gateway_url: str) -> None:
    assert set(fuzz(gateway_url)) >= {
        "GET /v1/models",
        "POST /v1/completions",
        "POST /v1/chat/completions",
        "POST /v1/embeddings",
        "POST /v1/feedback",
        "GET /v1/keys",
        "POST /v1/keys",
        "DELETE /v1/keys/{key_id}",
    }


def test_labeling_api(labeling_url: str) -> None:
    assert set(fuzz(labeling_url)) >= {
        "GET /api/projects",
        "POST /api/projects",
        "GET /api/projects/{project}/next",
        "POST /api/projects/{project}/tasks/{task_id}/answer",
        "POST /api/annotators",
        "GET /api/projects/{project}/export",
    }


def test_evaluation_api(evaluation_url: str) -> None:
    covered = set(fuzz(evaluation_url, OPEN["evaluation"]))
    assert covered >= {
        "GET /v1/registry/models",
        "GET /v1/registry/models/{name}/versions/{version}/report.html",
        "POST /v1/registry/login",
        "POST /v1/registry/models/{name}/promote",
        "POST /v1/registry/models/{name}/versions",
        "POST /v1/registry/models/{name}/versions/{version}/approve",
        "POST /v1/registry/models/{name}/rollback",
    }


def test_monitoring_api(monitoring_url: str) -> None:
    covered = set(fuzz(monitoring_url, OPEN["monitoring"]))
    assert covered >= {
        "GET /api/status",
        "GET /api/dashboards/{name}",
        "GET /dashboards/{name}",
        "POST /login",
        "POST /api/decisions/{decision_id}/approve",
    }
