"""The audit trail over HTTP (admin key): list and verify."""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from fastapi import FastAPI, Header, Query
from fastapi.responses import JSONResponse
from sqlalchemy.engine import Engine
from sqlmodel import Session

from services.audit.adapters.store import SqlAuditLog
from services.audit.domain import verify


def build_api(engine: Engine, admin_key: Callable[[], str | None], max_page: int) -> FastAPI:
    api = FastAPI(title="llmops audit", docs_url=None, redoc_url=None)

    def allowed(authorization: str | None, x_api_key: str | None) -> bool:
        key = x_api_key or (authorization or "").removeprefix("Bearer ").strip()
        expected = admin_key()
        return bool(key and expected and hmac.compare_digest(key.encode(), expected.encode()))

    def forbidden() -> JSONResponse:
        return JSONResponse({"error": "the audit trail needs the admin role"}, status_code=403)

    def listing(action: str | None, actor: str | None, limit: int) -> list[dict[str, Any]]:
        with Session(engine) as session:
            found = SqlAuditLog(session).search(
                action=action, actor=actor, limit=limit, newest_first=True
            )
        return [asdict(e) for e in found]

    def check() -> dict[str, Any]:
        with Session(engine) as session:
            return verify(SqlAuditLog(session).entries()).as_dict()

    @api.get("/v1/audit", response_model=None)
    async def list_entries(
        action: str | None = Query(None, max_length=200),
        actor: str | None = Query(None, max_length=200),
        limit: int = Query(50, ge=1),
        authorization: str | None = Header(None),
        x_api_key: str | None = Header(None),
    ) -> JSONResponse | dict[str, Any]:
        if not allowed(authorization, x_api_key):
            return forbidden()
        rows = await asyncio.to_thread(listing, action, actor, min(limit, max_page))
        return {"entries": rows}

    @api.get("/v1/audit/verify", response_model=None)
    async def verify_chain(
        authorization: str | None = Header(None), x_api_key: str | None = Header(None)
    ) -> JSONResponse | dict[str, Any]:
        if not allowed(authorization, x_api_key):
            return forbidden()
        return await asyncio.to_thread(check)

    return api
