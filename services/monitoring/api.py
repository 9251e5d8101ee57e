"""HTTP: the dashboards, their JSON API, the policy's decisions and approvals, admin routes.

Reads (the dashboards and their data, status, alerts, drift, decisions) need a key of role
viewer or above (shared/webauth.py: a header, or the cookie the login form sets for the
pages); approvals a key of role operator in a header. ``/healthz``, ``/metrics`` and the
plotly script stay open: probes and Prometheus scrape them, and they hold no records."""

from __future__ import annotations

from dataclasses import asdict
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse
from sqlmodel import Session

from services.monitoring import dashboards
from services.monitoring.adapters.store import (
    AlertRow,
    DecisionRow,
    DriftRow,
    SqlRepository,
)
from services.monitoring.policy import Outcome
from services.monitoring.windows import summarize
from shared.keys import ApiPrincipal, KeyDeniedError
from shared.runtime import health
from shared.telemetry import prometheus_payload
from shared.webauth import login, page_denied, require_read

router = APIRouter()
REFRESH_S = 5
_PAGE = (Path(__file__).parent / "static" / "dashboard.html").read_text()


def _plotly_js() -> Path:
    return Path(str(resources.files("plotly") / "package_data" / "plotly.min.js"))


APPROVE_ROLE = "operator"
Limit = Annotated[int, Query(ge=1, le=10_000, description="Rows, newest first.")]
DecisionId = Annotated[int, PathParam(ge=1, le=2**31 - 1, description="Decision id.")]
"""Bounded: a larger number is a 422, not a database overflow (a 500)."""


LOGIN = "/login"


def _state(request: Request) -> Any:
    return request.app.state


def reader(request: Request) -> ApiPrincipal:
    """A key of role viewer or above (401/403 JSON otherwise)."""
    try:
        return require_read(_state(request).keys, request)
    except KeyDeniedError as denied:
        raise HTTPException(denied.status, denied.message) from None


Reader = Annotated[ApiPrincipal, Depends(reader)]


def _rows(request: Request, table: type[Any], limit: int) -> list[dict[str, Any]]:
    with Session(_state(request).runtime.engine) as session:
        rows = SqlRepository(session).recent(table, limit)
        return [r.model_dump(mode="json") for r in rows]


@router.get("/healthz")
async def healthz(request: Request) -> JSONResponse:
    status, body = await health(_state(request).runtime)
    return JSONResponse(body, status_code=status)


@router.get("/metrics")
async def metrics() -> Response:
    payload, content_type = prometheus_payload()
    return Response(payload, media_type=content_type)


@router.get("/static/plotly.min.js")
async def plotly_js() -> FileResponse:
    return FileResponse(
        _plotly_js(),
        media_type="application/javascript",
        headers={"Cache-Control": "public, max-age=86400"},
    )


@router.get("/", include_in_schema=False)
async def index() -> RedirectResponse:
    return RedirectResponse("/dashboards/pipeline")


@router.post(LOGIN, include_in_schema=True, response_class=HTMLResponse)
async def login_form(request: Request) -> Response:
    """The dashboards' login form posts here (``key``, ``next``): sets the key cookie."""
    return await login(request, _state(request).keys, action=LOGIN, home="/dashboards/pipeline")


@router.get("/dashboards/{name}", response_class=HTMLResponse)
async def dashboard(name: str, request: Request) -> HTMLResponse:
    try:
        require_read(_state(request).keys, request)
    except KeyDeniedError as denied:
        return page_denied(request, LOGIN, denied)  # 401/403: a form asking for a key
    if name not in dashboards.BUILDERS:
        raise HTTPException(404, f"no dashboard {name!r}; known: {', '.join(dashboards.TITLES)}")
    nav = "".join(
        f'<a href="/dashboards/{n}" class="{"active" if n == name else ""}">{t}</a>'
        for n, t in dashboards.TITLES.items()
    )
    page = (
        _PAGE.replace("__TITLE__", dashboards.TITLES[name])
        .replace("__NAV__", nav)
        .replace("__NAME__", name)
        .replace("__REFRESH_MS__", str(REFRESH_S * 1000))
    )
    return HTMLResponse(page)


@router.get("/api/dashboards/{name}")
def dashboard_data(name: str, request: Request, _who: Reader) -> dict[str, Any]:
    builder = dashboards.BUILDERS.get(name)
    if builder is None:
        raise HTTPException(404, f"no dashboard {name!r}; known: {', '.join(dashboards.TITLES)}")
    state = _state(request)
    with Session(state.runtime.engine) as session:
        figures = builder(state.service, SqlRepository(session), list(state.poller.history))
    return {"name": name, "refresh_s": REFRESH_S, "figures": figures}


@router.get("/api/status")
def status(request: Request, _who: Reader) -> dict[str, Any]:
    state = _state(request)
    service = state.service
    with service.lock:
        windows = {
            f"{m}@{v}": {
                **summarize(list(w.history)[-w.size :]),
                "records": len(w.history),
                "reference": len(w.reference),
                "pending": len(w.current),
                "windows_evaluated": w.windows_evaluated,
            }
            for (m, v), w in service.windows.items()
        }
        feedback = {
            m: {"mean": f.mean, "reference": f.reference_mean} for m, f in service.feedback.items()
        }
    with Session(state.runtime.engine) as session:
        models = [m.model_dump(mode="json") for m in SqlRepository(session).models()]
    pipeline = state.poller.history[-1] if state.poller.history else None
    return {
        "windows": windows,
        "feedback": feedback,
        "workers": list(service.workers.values()),
        "models": models,
        "pipeline": pipeline,
        "policy": asdict(service.policy),
        "window_size": service.settings.window_size,
    }


@router.get("/api/alerts")
def alerts(request: Request, _who: Reader, limit: Limit = 100) -> list[dict[str, Any]]:
    return _rows(request, AlertRow, limit)


@router.get("/api/drift")
def drift(request: Request, _who: Reader, limit: Limit = 100) -> list[dict[str, Any]]:
    return _rows(request, DriftRow, limit)


@router.get("/api/decisions")
def decisions(request: Request, _who: Reader, limit: Limit = 100) -> list[dict[str, Any]]:
    return _rows(request, DecisionRow, limit)


@router.post("/api/decisions/{decision_id}/approve")
def approve(decision_id: DecisionId, request: Request) -> dict[str, Any]:
    """An operator approves a retraining that waits for approval (a key of role operator or
    above from the platform's key registry, X-API-Key or Bearer)."""
    state = _state(request)
    try:
        who = state.keys.require(
            request.headers.get("authorization"), request.headers.get("x-api-key"), APPROVE_ROLE
        )
    except KeyDeniedError as denied:
        raise HTTPException(denied.status, denied.message) from None
    with state.runtime.bus.unit_of_work() as uow:
        repo = SqlRepository(uow.session)
        pending = repo.decision(decision_id)
        if pending is None:
            raise HTTPException(404, f"no decision {decision_id}")
        if pending.outcome != Outcome.AWAITING_APPROVAL.value or pending.approved_by:
            raise HTTPException(409, f"decision {decision_id} is {pending.outcome}, not awaiting")
        pending.approved_by = who.name
        repo.add(pending)
        events = state.service.trigger(
            repo, pending.model_name, pending.trigger, None, approved_by=who.name
        )
        for event in events:
            uow.emit(event)
    last = events[-1]
    return {
        "decision": decision_id,
        "outcome": last.details["outcome"],
        "reason": last.details["reason"],
    }
