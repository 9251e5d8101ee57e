"""The de-anonymization HTTP API: admin role only (keys of the platform's one registry,
shared/keys.py: revoked keys are refused), a number of requests per minute per key
(shared/limits.py), every attempt audited."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import uvicorn
from fastapi import FastAPI, Header
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from services.anonymization.crypto import UnreadableError
from services.anonymization.handlers import VaultFactory
from shared.events import AuditRecorded, ErasureRequested
from shared.http import BodyLimit
from shared.keys import (
    ApiPrincipal,
    KeyDeniedError,
    KeyRegistry,
    actor_of,
    presented_key,
)
from shared.limits import RateLimiter
from shared.runtime import Runtime

PRIVILEGED_ROLE = "admin"
"""De-anonymization and erasure need an admin key (docs/security.md, Keys)."""
_OUTCOMES = {401: "unauthenticated", 403: "forbidden", 429: "rate_limited"}


@dataclass(frozen=True)
class _Window:
    """A presented key as the limiter sees it: its id, the API's requests per minute."""

    key_id: str
    rpm: int
    tpm: int = 2**62  # this API counts requests only


class ErasureBody(BaseModel):
    subject: str = Field(min_length=1, max_length=512, description="E-mail, name, phone, card...")
    retrain: bool = Field(
        False, description="Retrain the models trained on the subject's records, without them."
    )


class DeanonymizeRequest(BaseModel):
    record_id: str = Field(description="Record to restore (as in RecordsAnonymized).")
    reason: str = Field("", description="Why, for the audit trail (no personal data).")


def build_api(
    runtime: Runtime,
    vault_for: VaultFactory,
    keys: KeyRegistry,
    subject_ref: Callable[[str], str],
    *,
    max_body_bytes: int = 64_000,
    rate_per_minute: int = 30,
    clock: Callable[[], float] = time.monotonic,
) -> FastAPI:
    """The privileged API: erasure requests and de-anonymization (admin role, audited).

    Erasure goes through here so that no other process needs the pseudonym key: the service
    derives the subject reference and publishes the request itself. Bodies are bounded while
    they are read, before the key is even looked at (``BodyLimit``). Each presented key
    (callers without a live key share one window) may make ``rate_per_minute`` requests per sliding
    minute, refused or not; beyond that a 429 with ``Retry-After`` answers, before the key
    is checked, and is audited like the other refusals.
    """
    api = FastAPI(title="llmops anonymization", docs_url=None, redoc_url=None)
    api.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    limiter = RateLimiter(clock)

    def audit(actor: str, allowed: bool, record_id: str, outcome: str, reason: str) -> None:
        with runtime.bus.unit_of_work() as uow:
            uow.emit(
                AuditRecorded(
                    action="deanonymize",
                    actor=actor,
                    allowed=allowed,
                    target=f"record:{record_id}"[:300],
                    details={"outcome": outcome, "reason": reason[:200]},
                )
            )

    def audit_erasure_refused(actor: str, outcome: str) -> None:
        with runtime.bus.unit_of_work() as uow:
            uow.emit(
                AuditRecorded(
                    action="erasure.request",
                    actor=actor,
                    allowed=False,
                    target="subject:-",  # the subject of a refused request is not derived
                    details={"outcome": outcome},
                )
            )

    def throttle(authorization: str | None, x_api_key: str | None) -> JSONResponse | None:
        """None while the presented key is within its rate; else the 429 (OpenAI-like)."""
        principal = keys.resolve(presented_key(authorization, x_api_key))
        # a live key has its own window; callers without one share one (bounded memory,
        # and guessing keys is as slow as the rate)
        window = _Window(principal.key_id if principal else "unauthenticated", rate_per_minute)
        refused = limiter.check(window)
        if refused is None:
            return None
        retry_after = refused[1]
        message = (
            f"Rate limit reached: {rate_per_minute} de-anonymization and erasure requests "
            f"per minute per key; retry after {retry_after} s."
        )
        error = {
            "message": message,
            "type": "rate_limit_exceeded",
            "param": None,
            "code": "rate_limit_requests",
        }
        return JSONResponse(
            {"error": error}, status_code=429, headers={"Retry-After": str(retry_after)}
        )

    def check(authorization: str | None, x_api_key: str | None) -> ApiPrincipal | JSONResponse:
        """The caller if within its rate and its key is live and admin; else the JSON
        refusal (429, 401 or 403)."""
        if (too_many := throttle(authorization, x_api_key)) is not None:
            return too_many
        try:
            return keys.require(authorization, x_api_key, PRIVILEGED_ROLE)
        except KeyDeniedError as denied:
            message = f"de-anonymization and erasure need the admin role: {denied.message}"
            return JSONResponse({"error": message}, status_code=denied.status)

    @api.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    def request_erasure(actor: str, body: ErasureBody) -> dict[str, str]:
        ref = subject_ref(body.subject)
        with runtime.bus.unit_of_work() as uow:
            request = uow.emit(ErasureRequested(subject_ref=ref, retrain=body.retrain))
            uow.emit(
                AuditRecorded(
                    action="erasure.request",
                    actor=actor,
                    allowed=True,
                    target=f"subject:{ref}",
                    details={"retrain": body.retrain},
                )
            )
        return {"request_id": str(request.event_id), "subject_ref": ref}

    @api.post("/v1/erasures")
    async def erasures(
        body: ErasureBody,
        authorization: str | None = Header(None),
        x_api_key: str | None = Header(None),
    ) -> JSONResponse:
        who = check(authorization, x_api_key)
        if isinstance(who, JSONResponse):
            actor = actor_of(presented_key(authorization, x_api_key))
            await asyncio.to_thread(audit_erasure_refused, actor, _OUTCOMES[who.status_code])
            return who
        answer = await asyncio.to_thread(request_erasure, who.actor, body)
        return JSONResponse(answer, status_code=202)

    @api.post("/v1/deanonymize")
    async def deanonymize(
        body: DeanonymizeRequest,
        authorization: str | None = Header(None),
        x_api_key: str | None = Header(None),
    ) -> JSONResponse:
        who = check(authorization, x_api_key)
        if isinstance(who, JSONResponse):
            actor = actor_of(presented_key(authorization, x_api_key))
            outcome = _OUTCOMES[who.status_code]
            await asyncio.to_thread(audit, actor, False, body.record_id, outcome, body.reason)
            return who
        actor = who.actor
        status, payload = await asyncio.to_thread(restore, body.record_id)
        outcome = {200: "restored", 404: "unknown", 410: "erased"}[status]
        await asyncio.to_thread(audit, actor, True, body.record_id, outcome, body.reason)
        return JSONResponse(payload, status_code=status)

    def restore(record_id: str) -> tuple[int, dict[str, Any]]:
        assert runtime.engine is not None
        from sqlmodel import Session

        with Session(runtime.engine) as session:
            vault = vault_for(session)
            try:
                original = vault.open_record(record_id)
            except KeyError:
                return 404, {"error": f"no record {record_id!r} in the vault"}
            except UnreadableError:
                return 410, {"error": f"record {record_id!r} belongs to an erased subject"}
            original.pop("dek", None)
            fields: dict[str, Any] = {}
            for field_id in vault.field_ids(record_id):
                with contextlib.suppress(KeyError, UnreadableError):
                    fields[field_id.split("#", 1)[1]] = vault.open_record(field_id)["text"]
            return 200, {"record_id": record_id, **original, "fields": fields}

    return api


class _QuietServer(uvicorn.Server):
    """uvicorn inside the service's event loop: the service owns the signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.asynccontextmanager
async def serve_api(api: FastAPI, host: str, port: int) -> AsyncIterator[None]:
    server = _QuietServer(uvicorn.Config(api, host=host, port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    try:
        while not server.started and not task.done():
            await asyncio.sleep(0.05)
        if task.done():
            task.result()
        yield
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, timeout=10)
