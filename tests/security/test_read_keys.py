"""Monitoring's and the model registry's reads need a key of the one registry, role viewer or
above (issue #13): no key, an unknown or a revoked one 401 (viewer is the lowest role, so no
live key is too low: 403 cannot happen), JSON for the APIs and a login form for the pages; the form
sets an HttpOnly cookie the pages and their data reads take, never the changes. Health,
metrics and the plotly script stay open (probes and Prometheus scrape them)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlmodel import SQLModel

from services.evaluation.adapters import store as _evaluation_tables  # noqa: F401
from services.evaluation.api import build_api as build_registry_api
from services.monitoring import api as monitoring_api
from services.monitoring.adapters import store as _monitoring_tables  # noqa: F401
from shared.keys import KeyRegistry, KeyView, changed, new_secret
from shared.settings import ServiceSettings
from shared.storage import make_engine
from shared.webauth import COOKIE

pytestmark = pytest.mark.handlers
ROOT = "the-root-admin-key"


class Keys:
    def __init__(self) -> None:
        self.registry = KeyRegistry(ServiceSettings(require_authority=False), KeyView(lambda: ROOT))
        self.viewer = new_secret()
        self.registry.view.apply(changed(self.viewer, "dash", "viewer", 1, 1))


def _engine(tmp_path: Path, name: str) -> Any:
    engine = make_engine(f"sqlite:///{tmp_path / name}")
    SQLModel.metadata.create_all(engine)
    return engine


@pytest.fixture
async def monitoring(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, Keys]]:
    keys = Keys()
    app = FastAPI()
    app.state.keys = keys.registry
    app.state.runtime = SimpleNamespace(engine=_engine(tmp_path, "monitoring.db"))
    app.include_router(monitoring_api.router)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://monitoring") as http:
        yield http, keys


@pytest.fixture
async def registry(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, Keys]]:
    keys = Keys()
    runtime = SimpleNamespace(engine=_engine(tmp_path, "registry.db"), service="evaluation")
    app = build_registry_api(runtime, keys.registry, lambda: None)  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://registry") as http:
        yield http, keys


READS = ["/api/alerts", "/api/drift", "/api/decisions?limit=5"]


async def test_monitoring_reads_need_a_viewer_key(
    monitoring: tuple[httpx.AsyncClient, Keys],
) -> None:
    http, keys = monitoring
    for path in READS:
        assert (await http.get(path)).status_code == 401, path
        unknown = await http.get(path, headers={"x-api-key": "sk-llmops-nope"})
        assert unknown.status_code == 401
        assert "invalid or revoked" in unknown.json()["detail"]
        ok = await http.get(path, headers={"x-api-key": keys.viewer})
        assert ok.status_code == 200, ok.text
        assert ok.json() == []
        bearer = await http.get(path, headers={"authorization": f"Bearer {ROOT}"})
        assert bearer.status_code == 200
    keys.registry.view.apply(changed(keys.viewer, "dash", "viewer", 1, 1, revoked=True))
    assert (await http.get("/api/alerts", headers={"x-api-key": keys.viewer})).status_code == 401
    # open by design: liveness, Prometheus, the charting script
    assert (await http.get("/metrics")).status_code == 200
    assert (await http.get("/static/plotly.min.js")).status_code == 200


async def test_the_dashboard_page_asks_for_a_key_and_the_cookie_opens_it(
    monitoring: tuple[httpx.AsyncClient, Keys],
) -> None:
    http, keys = monitoring
    page = await http.get("/dashboards/drift")
    assert page.status_code == 401
    assert '<form method="post" action="/login">' in page.text
    assert 'value="/dashboards/drift"' in page.text
    wrong = await http.post("/login", data={"key": "sk-llmops-nope", "next": "/dashboards/drift"})
    assert wrong.status_code == 401
    assert COOKIE not in wrong.cookies
    away = await http.post("/login", data={"key": keys.viewer, "next": "//evil.example/x"})
    assert away.status_code == 303
    assert away.headers["location"] == "/dashboards/pipeline"  # never off the site
    done = await http.post("/login", data={"key": keys.viewer, "next": "/dashboards/drift"})
    assert done.status_code == 303
    assert done.headers["location"] == "/dashboards/drift"
    cookie = done.headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    http.cookies.set(COOKIE, keys.viewer)
    shown = await http.get("/dashboards/drift")
    assert shown.status_code == 200
    assert "/api/dashboards/" in shown.text
    assert (await http.get("/api/alerts")).status_code == 200  # the page's reads: the cookie
    # a change never takes the cookie: approvals want an operator key in a header
    assert (await http.post("/api/decisions/1/approve")).status_code == 401
    assert (await http.post("/login", content=b"&" * 100)).status_code == 422


async def test_registry_reads_need_a_viewer_key(registry: tuple[httpx.AsyncClient, Keys]) -> None:
    http, keys = registry
    assert (await http.get("/v1/registry/models")).status_code == 401
    unknown = await http.get("/v1/registry/models", headers={"x-api-key": "sk-llmops-nope"})
    assert unknown.status_code == 401
    assert "invalid or revoked" in unknown.json()["error"]["message"]
    listed = await http.get("/v1/registry/models", headers={"x-api-key": keys.viewer})
    assert listed.status_code == 200
    assert listed.json() == {"data": []}
    for path in ("/v1/registry/models/m", "/v1/registry/models/m/versions/v1/card.md"):
        assert (await http.get(path)).status_code == 401
        assert (await http.get(path, headers={"x-api-key": keys.viewer})).status_code == 404
    page = await http.get("/v1/registry/models/m/versions/v1/report.html")
    assert page.status_code == 401
    assert 'action="/v1/registry/login"' in page.text
    done = await http.post(
        "/v1/registry/login",
        data={"key": keys.viewer, "next": "/v1/registry/models/m/versions/v1/card.html"},
    )
    assert done.status_code == 303
    assert "Path=/v1/registry" in done.headers["set-cookie"]
    http.cookies.set(COOKIE, keys.viewer)
    assert (await http.get("/v1/registry/models/m/versions/v1/card.html")).status_code == 404
    assert (await http.get("/v1/registry/static/plotly.min.js")).status_code == 200
