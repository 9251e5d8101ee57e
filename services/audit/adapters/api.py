"""The audit trail over HTTP: list and verify, for keys of role operator or above (the
platform's one key registry, shared/keys.py; revoked keys are refused)."""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from typing import Any

from fastapi import FastAPI, Header, Query
from fastapi.responses import JSONResponse
from sqlalchemy.engine import Engine
from sqlmodel import Session

from services.audit.adapters.store import SqlAuditLog
from services.audit.domain import verify
from shared.keys import KeyDeniedError, KeyRegistry

READ_ROLE = "operator"


def build_api(engine: Engine, keys: KeyRegistry, max_page: int) -> FastAPI:
    api = FastAPI(title="llmops audit", docs_url=None, redoc_url=None)

    def refused(authorization: str | None, x_api_key: str | None) -> JSONResponse | None:
        """None if the caller's key is live and operator or above; else the JSON refusal."""
        try:
            keys.require(authorization, x_api_key, READ_ROLE)
        except KeyDeniedError as denied:
            message = f"the audit trail needs role {READ_ROLE} or above: {denied.message}"
            return JSONResponse({"error": message}, status_code=denied.status)
        return None

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
        if (refusal := refused(authorization, x_api_key)) is not None:
            return refusal
        rows = await asyncio.to_thread(listing, action, actor, min(limit, max_page))
        return {"entries": rows}

    @api.get("/v1/audit/verify", response_model=None)
    async def verify_chain(
        authorization: str | None = Header(None), x_api_key: str | None = Header(None)
    ) -> JSONResponse | dict[str, Any]:
        if (refusal := refused(authorization, x_api_key)) is not None:
            return refusal
        return await asyncio.to_thread(check)

    return api
