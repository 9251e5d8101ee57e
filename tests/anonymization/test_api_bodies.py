"""The de-anonymization API bounds request bodies while reading them, before the key is
looked at: an oversized or endless chunked body is refused with a 413 and never parsed."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from services.anonymization.adapters.api import build_api
from shared.keys import KeyRegistry, KeyView
from shared.settings import ServiceSettings

pytestmark = pytest.mark.unit
ADMIN = "the-admin-key"


class RecordingBus:
    def __init__(self) -> None:
        self.emitted: list[Any] = []

    @contextlib.contextmanager
    def unit_of_work(self) -> Iterator[Any]:
        yield SimpleNamespace(emit=self.emitted.append)


def _client(bus: RecordingBus) -> httpx.AsyncClient:
    def no_vault(_session: object) -> None:
        raise AssertionError("the vault is never opened here")

    api = build_api(
        SimpleNamespace(bus=bus, engine=None),  # type: ignore[arg-type]
        no_vault,  # type: ignore[arg-type]
        KeyRegistry(ServiceSettings(require_authority=False), KeyView(lambda: ADMIN)),
        lambda subject: subject,
        max_body_bytes=2048,
    )
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=api), base_url="http://anon")


async def test_oversized_bodies_are_refused_before_auth_and_parsing() -> None:
    bus = RecordingBus()
    pulled: list[int] = []

    async def endless() -> AsyncIterator[bytes]:  # chunked, no Content-Length
        yield b'{"record_id": "'
        for _ in range(1000):
            pulled.append(1)
            yield b"x" * 1024

    async with _client(bus) as http:
        chunked = await http.post("/v1/deanonymize", content=endless())
        declared = await http.post(
            "/v1/erasures",
            content=b"{}",
            headers={"content-length": str(10**9), "x-api-key": ADMIN},
        )
        small = await http.post("/v1/deanonymize", json={"record_id": "r1"})
    assert chunked.status_code == 413
    assert "2048" in chunked.json()["detail"]
    assert len(pulled) <= 4  # cut off at the limit, not read whole
    assert declared.status_code == 413  # refused on its declared length, nothing read
    assert small.status_code == 401  # a bounded body goes on to the key check (no key)
    assert [(a.action, a.allowed) for a in bus.emitted] == [("deanonymize", False)]
