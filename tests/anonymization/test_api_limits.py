"""The de-anonymization API limits each key's requests per minute: beyond the rate a 429 with
Retry-After and an OpenAI-like error body answers, nothing is published, and the refusal is
audited like the others."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from services.anonymization.adapters.api import build_api
from services.anonymization.config import AnonymizationSettings
from shared.events import AuditRecorded, ErasureRequested
from shared.keys import KeyRegistry, KeyView
from shared.settings import ServiceSettings

pytestmark = pytest.mark.unit
ADMIN = "the-admin-key"


class RecordingBus:
    def __init__(self) -> None:
        self.emitted: list[Any] = []

    @contextlib.contextmanager
    def unit_of_work(self) -> Iterator[Any]:
        yield SimpleNamespace(emit=self._emit)

    def _emit(self, event: Any) -> Any:
        self.emitted.append(event)
        return event


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


def _client(bus: RecordingBus, clock: Clock, rate: int) -> httpx.AsyncClient:
    def no_vault(_session: object) -> None:
        raise AssertionError("the vault is never opened here")

    api = build_api(
        SimpleNamespace(bus=bus, engine=None),  # type: ignore[arg-type]
        no_vault,  # type: ignore[arg-type]
        KeyRegistry(ServiceSettings(require_authority=False), KeyView(lambda: ADMIN)),
        lambda subject: f"ref-{subject}",
        rate_per_minute=rate,
        clock=clock,
    )
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=api), base_url="http://anon")


def _audits(bus: RecordingBus) -> list[tuple[str, bool, str | None]]:
    return [
        (a.action, a.allowed, a.details.get("outcome"))
        for a in bus.emitted
        if isinstance(a, AuditRecorded)
    ]


async def test_requests_beyond_the_rate_get_429_with_retry_after_and_are_audited() -> None:
    bus, clock = RecordingBus(), Clock()
    admin = {"x-api-key": ADMIN}
    async with _client(bus, clock, rate=2) as http:
        first = await http.post("/v1/erasures", json={"subject": "a@x.org"}, headers=admin)
        clock.now += 10
        second = await http.post("/v1/erasures", json={"subject": "b@x.org"}, headers=admin)
        bus.emitted.clear()
        third = await http.post("/v1/erasures", json={"subject": "c@x.org"}, headers=admin)
        restore = await http.post("/v1/deanonymize", json={"record_id": "r1"}, headers=admin)
        # callers without a live key have their own window: still refused for their key
        keyless = await http.post("/v1/deanonymize", json={"record_id": "r1"})
        clock.now += 50  # the first request leaves the window
        again = await http.post("/v1/erasures", json={"subject": "d@x.org"}, headers=admin)
    assert (first.status_code, second.status_code) == (202, 202)
    for refused in (third, restore):
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "50"
        error = refused.json()["error"]
        assert error["type"] == "rate_limit_exceeded"
        assert error["code"] == "rate_limit_requests"
        assert "2 de-anonymization and erasure requests per minute" in error["message"]
    assert keyless.status_code == 401
    assert again.status_code == 202
    erasures = [e for e in bus.emitted if isinstance(e, ErasureRequested)]
    assert [e.subject_ref for e in erasures] == ["ref-d@x.org"]  # nothing for the refused one
    assert _audits(bus) == [
        ("erasure.request", False, "rate_limited"),
        ("deanonymize", False, "rate_limited"),
        ("deanonymize", False, "unauthenticated"),
        ("erasure.request", True, None),
    ]
    actors = {a.actor for a in bus.emitted if isinstance(a, AuditRecorded) and not a.allowed}
    assert ADMIN not in str(actors)  # audits name the key id, never the key


async def test_unauthenticated_attempts_share_one_window() -> None:
    bus, clock = RecordingBus(), Clock()
    async with _client(bus, clock, rate=3) as http:
        answers = [
            await http.post(
                "/v1/deanonymize", json={"record_id": "r"}, headers={"x-api-key": f"guess-{i}"}
            )
            for i in range(4)
        ]
        admin = await http.post(
            "/v1/erasures", json={"subject": "a@x.org"}, headers={"x-api-key": ADMIN}
        )
    assert [a.status_code for a in answers] == [401, 401, 401, 429]  # guessing keys is throttled
    assert admin.status_code == 202  # a live key's window is its own


def test_the_rate_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMOPS_ANONYMIZATION_API_RATE_PER_MINUTE", "7")
    assert AnonymizationSettings().api_rate_per_minute == 7
