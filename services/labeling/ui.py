"""The web UI: server-rendered pages (Jinja2) with a little JavaScript over the REST API.

Sign-in stores the API key in an HTTP-only cookie; the pages' scripts call ``/api`` with it.
Charts use plotly.min.js served from the installed plotly package (no CDN).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import plotly
from fastapi import APIRouter, Form, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from sqlmodel import Session, select

from services.labeling import stats
from services.labeling.adapters.store import ProjectRow
from services.labeling.auth import COOKIE, Principal
from services.labeling.service import spec_of

HERE = Path(__file__).parent
STATIC = HERE / "static"
PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
templates = Jinja2Templates(directory=HERE / "templates")
router = APIRouter(include_in_schema=False)


def _who(request: Request) -> Principal | None:
    return request.app.state.keys.resolve(request.cookies.get(COOKIE))  # type: ignore[no-any-return]


def _page(request: Request, name: str, who: Principal, **context: Any) -> HTMLResponse:
    return templates.TemplateResponse(request, name, {"who": who, **context})


def _signin() -> RedirectResponse:
    return RedirectResponse("/login", status_code=303)


@router.get("/")
async def root() -> RedirectResponse:
    return RedirectResponse("/ui", status_code=303)


@router.get("/static/plotly.min.js")
async def plotly_js() -> FileResponse:
    return FileResponse(PLOTLY_JS, media_type="text/javascript")


@router.get("/login")
async def login_form(request: Request, error: str = "") -> HTMLResponse:
    return templates.TemplateResponse(request, "login.html", {"who": None, "error": error})


@router.post("/login")
async def login(request: Request, key: str = Form("")) -> Response:
    who = request.app.state.keys.resolve(key.strip())
    if who is None:
        return templates.TemplateResponse(
            request,
            "login.html",
            {"who": None, "error": "Unknown or revoked key."},
            status_code=401,
        )
    response = RedirectResponse("/ui", status_code=303)
    response.set_cookie(COOKIE, key.strip(), httponly=True, samesite="strict")
    return response


@router.get("/logout")
async def logout() -> RedirectResponse:
    response = _signin()
    response.delete_cookie(COOKIE)
    return response


@router.get("/ui")
async def projects(request: Request) -> Response:
    who = _who(request)
    if who is None:
        return _signin()
    with Session(request.app.state.engine) as session:
        rows = session.exec(select(ProjectRow).order_by(ProjectRow.name)).all()
        items = [stats.project_stats(session, spec_of(r)) for r in rows]
    return _page(request, "projects.html", who, projects=items)


@router.get("/ui/projects/{project}")
async def project_page(request: Request, project: str) -> Response:
    who = _who(request)
    if who is None:
        return _signin()
    with Session(request.app.state.engine) as session:
        row = request.app.state.labeling.project(session, project)
        spec = spec_of(row)
        facts = stats.project_stats(session, spec)
    return _page(
        request, "project.html", who, spec=spec, stats=facts, last_version=row.last_version
    )


@router.get("/ui/projects/{project}/label")
async def label_page(request: Request, project: str) -> Response:
    who = _who(request)
    if who is None:
        return _signin()
    with Session(request.app.state.engine) as session:
        spec = spec_of(request.app.state.labeling.project(session, project))
    return _page(request, "label.html", who, spec=spec)


@router.get("/ui/projects/{project}/adjudicate")
async def adjudicate_page(request: Request, project: str) -> Response:
    who = _who(request)
    if who is None:
        return _signin()
    if not who.is_admin:
        return HTMLResponse("Adjudication needs the admin role.", status_code=403)
    with Session(request.app.state.engine) as session:
        spec = spec_of(request.app.state.labeling.project(session, project))
    return _page(request, "adjudicate.html", who, spec=spec)
