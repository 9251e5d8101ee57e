"""The registry's HTTP API on the service's admin port: reads need a key of role viewer or
above (shared/webauth.py: a header, or for the report and card pages the cookie its login
form sets), changes an admin key in a header, both of the platform's one key registry
(shared/keys.py; the root key or an issued key, never a revoked one). ``/healthz``,
``/metrics`` and the plotly script stay open.

Promotion, approval and rollback are requests to this service (not events anyone may
publish): the registry checks the key, the version and its state, answers at once with a
clear error (404/409 JSON naming what is wrong), and emits the events itself, audited.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from importlib import resources
from typing import Any

from fastapi import Depends, FastAPI, Header, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, Field
from sqlmodel import Session

from services.evaluation import report
from services.evaluation.adapters.store import ModelVersionRow, SqlRegistryStore
from services.evaluation.registry import Registry, RegistryError
from shared.events import AuditRecorded, ClaimCheck
from shared.keys import KeyDeniedError, KeyRegistry, presented_key
from shared.keys import actor_of as _key_actor
from shared.runtime import Runtime
from shared.webauth import login, page_denied, require_read

PREFIX = "/v1/registry"
LOGIN = f"{PREFIX}/login"


class PromoteBody(BaseModel):
    version: str = Field(description="Version to promote.")
    canary: float | None = Field(None, gt=0, lt=1, description="Challenger traffic share.")
    reason: str = Field("manual", max_length=500)


class RegisterBody(BaseModel):
    version: str = Field(min_length=1, max_length=200, description="New version id.")
    artifact: ClaimCheck = Field(description="Model directory or tarball in the store.")
    dataset: str | None = Field(None, description="Dataset to evaluate on (with version).")
    dataset_version: str | None = Field(None, description="Its version: queues evaluation.")


class RollbackBody(BaseModel):
    to: str | None = Field(None, description="Version to return to (default: previous).")
    reason: str = Field("manual", max_length=500)


CHANGE_ROLE = "admin"


def actor_of(key: str) -> str:
    return _key_actor(key)


def version_view(row: ModelVersionRow) -> dict[str, Any]:
    return {
        "name": row.name,
        "version": row.version,
        "status": row.status,
        "source": row.source,
        "passed": row.passed,
        "scores": json.loads(row.scores_json or "{}"),
        "verdicts": json.loads(row.verdicts_json or "[]"),
        "compared_with": row.compared_with,
        "run_id": row.run_id,
        "dataset": row.dataset,
        "dataset_version": row.dataset_version,
        "registered_at": str(row.registered_at),
        "evaluated_at": str(row.evaluated_at) if row.evaluated_at else None,
        "error": row.error,
    }


def build_api(runtime: Runtime, keys: KeyRegistry, on_registered: Callable[[], None]) -> FastAPI:
    api = FastAPI(title="llmops registry", docs_url=None, redoc_url=None)
    engine = runtime.engine
    assert engine is not None

    @api.exception_handler(RegistryError)
    async def registry_error(_request: Request, exc: RegistryError) -> JSONResponse:
        return JSONResponse({"error": {"message": str(exc)}}, status_code=exc.status)

    def require_admin(authorization: str | None, action: str, target: str) -> str:
        """The actor of an admin request; a refused attempt is audited too."""
        try:
            return keys.require(authorization, None, CHANGE_ROLE).actor
        except KeyDeniedError as denied:
            key = presented_key(authorization)
            actor = actor_of(key) if key else "anonymous"
            with runtime.bus.unit_of_work() as uow:
                uow.emit(
                    AuditRecorded(
                        action=action,
                        actor=actor,
                        allowed=False,
                        target=target[:300],
                        details={"reason": denied.message[:200]},
                    )
                )
            message = f"this needs an admin key: {denied.message}"
            raise RegistryError(denied.status, message) from None

    def reader(request: Request) -> None:
        """Reads: a key of role viewer or above (401/403 JSON otherwise)."""
        try:
            require_read(keys, request)
        except KeyDeniedError as denied:
            raise RegistryError(denied.status, denied.message) from None

    def page_reader(request: Request) -> HTMLResponse | None:
        """Pages: None if the key is fine, else the login form (401/403)."""
        try:
            require_read(keys, request)
        except KeyDeniedError as denied:
            return page_denied(request, LOGIN, denied)
        return None

    read = [Depends(reader)]

    @api.post(LOGIN, response_class=HTMLResponse)
    async def login_form(request: Request) -> Response:
        """The report and card pages' login form posts here (``key``, ``next``)."""
        return await login(request, keys, action=LOGIN, home=f"{PREFIX}/models", cookie_path=PREFIX)

    @api.get(f"{PREFIX}/models", dependencies=read)
    def list_models() -> dict[str, Any]:
        with Session(engine) as session:
            store = SqlRegistryStore(session)
            return {
                "data": [
                    {
                        "name": n,
                        "aliases": {a: r.version for a, r in store.aliases(n).items()},
                        "versions": len(store.versions(n)),
                    }
                    for n in store.names()
                ]
            }

    @api.get(f"{PREFIX}/models/{{name}}", dependencies=read)
    def show_model(name: str) -> dict[str, Any]:
        with Session(engine) as session:
            store = SqlRegistryStore(session)
            rows = store.versions(name)
            if not rows:
                raise RegistryError(404, f"no model {name!r} in the registry")
            return {
                "name": name,
                "aliases": {
                    a: {"version": r.version, "traffic_share": r.traffic_share}
                    for a, r in store.aliases(name).items()
                },
                "versions": [version_view(r) for r in rows],
                "history": [h.model_dump(mode="json") for h in store.history(name)],
            }

    def _row(session: Session, name: str, version: str) -> ModelVersionRow:
        row = SqlRegistryStore(session).version(name, version)
        if row is None:
            raise RegistryError(404, f"no version {version!r} of {name!r}")
        return row

    def _artifact(name: str, version: str, field: str) -> bytes:
        with Session(engine) as session:
            claim_json = getattr(_row(session, name, version), field)
        if claim_json is None:
            raise RegistryError(404, f"{name} {version} has no {field.removesuffix('_json')} yet")
        return runtime.artifacts.get_bytes(ClaimCheck.model_validate_json(claim_json))

    @api.get(f"{PREFIX}/models/{{name}}/versions/{{version}}", dependencies=read)
    def show_version(name: str, version: str) -> dict[str, Any]:
        with Session(engine) as session:
            return version_view(_row(session, name, version))

    @api.get(f"{PREFIX}/models/{{name}}/versions/{{version}}/report", dependencies=read)
    def report_json(name: str, version: str) -> Response:
        return Response(_artifact(name, version, "report_json"), media_type="application/json")

    @api.get(f"{PREFIX}/models/{{name}}/versions/{{version}}/report.html")
    def report_html(name: str, version: str, request: Request) -> HTMLResponse:
        denied = page_reader(request)
        if denied is not None:
            return denied
        return HTMLResponse(_artifact(name, version, "report_html_json").decode())

    @api.get(f"{PREFIX}/models/{{name}}/versions/{{version}}/card.md", dependencies=read)
    def card_md(name: str, version: str) -> PlainTextResponse:
        return PlainTextResponse(
            _artifact(name, version, "card_json").decode(), media_type="text/markdown"
        )

    @api.get(f"{PREFIX}/models/{{name}}/versions/{{version}}/card.html")
    def card_page(name: str, version: str, request: Request) -> HTMLResponse:
        denied = page_reader(request)
        if denied is not None:
            return denied
        return HTMLResponse(report.card_html(_artifact(name, version, "card_json").decode()))

    @api.get(report.PLOTLY_PATH)
    def plotly_js() -> Response:
        source = resources.files("plotly") / "package_data" / "plotly.min.js"
        return Response(
            source.read_bytes(),
            media_type="application/javascript",
            headers={"Cache-Control": "max-age=86400"},
        )

    # changes run on the event loop (async routes): the unit of work wakes the outbox relay
    def change(fn: Callable[[Registry], Any]) -> dict[str, Any]:
        with runtime.bus.unit_of_work() as uow:
            event = fn(Registry(SqlRegistryStore(uow.session), uow.emit, runtime.service))
        return json.loads(event.model_dump_json())

    @api.post(f"{PREFIX}/models/{{name}}/promote")
    async def promote(
        name: str, body: PromoteBody, authorization: str | None = Header(None)
    ) -> dict[str, Any]:
        actor = require_admin(authorization, "promote", f"model:{name}@{body.version}")
        return change(
            lambda r: r.promote(name, body.version, actor, canary=body.canary, reason=body.reason)
        )

    @api.post(f"{PREFIX}/models/{{name}}/versions")
    async def register(
        name: str, body: RegisterBody, authorization: str | None = Header(None)
    ) -> dict[str, Any]:
        actor = require_admin(authorization, "register", f"model:{name}@{body.version}")
        with runtime.bus.unit_of_work() as uow:
            registry = Registry(SqlRegistryStore(uow.session), uow.emit, runtime.service)
            row = registry.register_manual(
                name,
                body.version,
                body.artifact,
                actor,
                dataset=body.dataset,
                dataset_version=body.dataset_version,
            )
            view = version_view(row)
        on_registered()
        return view

    @api.post(f"{PREFIX}/models/{{name}}/versions/{{version}}/approve")
    async def approve(
        name: str, version: str, authorization: str | None = Header(None)
    ) -> dict[str, Any]:
        actor = require_admin(authorization, "approve", f"model:{name}@{version}")
        return change(lambda r: r.approve(name, version, actor))

    @api.post(f"{PREFIX}/models/{{name}}/rollback")
    async def rollback(
        name: str, body: RollbackBody, authorization: str | None = Header(None)
    ) -> dict[str, Any]:
        actor = require_admin(authorization, "rollback", f"model:{name}")
        return change(lambda r: r.rollback(name, actor, body.to, body.reason))

    return api
