"""Thin routes: parse, call the Gateway, shape the OpenAI response."""

from __future__ import annotations

import time
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ValidationError

from services.serving.gateway.keys import Action, Role, new_secret
from services.serving.gateway.protocol import (
    APIError,
    ChatCompletionRequest,
    CompletionRequest,
    FeedbackRequest,
    KeyCreateRequest,
)
from services.serving.gateway.responses import completion_body, sse_stream
from services.serving.gateway.serving import Gateway
from shared.events import AuditRecorded, FeedbackReceived
from shared.events.serving import ChatMessage
from shared.telemetry import prometheus_payload

router = APIRouter()
M = TypeVar("M", bound=BaseModel)


def _gateway(request: Request) -> Gateway:
    return request.app.state.gateway  # type: ignore[no-any-return]


async def _parse(request: Request, model: type[M]) -> M:
    limit = _gateway(request).settings.max_body_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise APIError(413, f"Request body over {limit} bytes.", code="body_too_large")
    raw = await request.body()
    if len(raw) > limit:
        raise APIError(413, f"Request body over {limit} bytes.", code="body_too_large")
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        param = ".".join(str(p) for p in first.get("loc", ())) or None
        raise APIError(400, f"{param}: {first.get('msg')}", param=param) from None


def _timeout(request: Request) -> float | None:
    value = request.headers.get("x-llmops-timeout-ms", "")
    return int(value) / 1000 if value.isdigit() else None


@router.get("/v1/models")
async def list_models(request: Request) -> dict[str, Any]:
    gateway = _gateway(request)
    gateway.authenticate(request.headers.get("authorization"), Action.LIST_MODELS)
    return {
        "object": "list",
        "data": [
            {
                "id": name,
                "object": "model",
                "created": 0,
                "owned_by": "llmops",
                "versions": sorted(versions),
            }
            for name, versions in sorted(gateway.models().items())
        ],
    }


async def _complete(
    request: Request, body: CompletionRequest | ChatCompletionRequest, chat: bool, **prompt: Any
) -> Response:
    gateway = _gateway(request)
    pending = await gateway.submit(request.state.key, body, timeout_s=_timeout(request), **prompt)
    if not body.stream:
        result = await gateway.result(pending)
        return JSONResponse(
            completion_body(result, body.model, chat),
            headers={
                "x-llmops-model-version": result.model_version,
                "x-llmops-worker": result.worker_id,
            },
        )
    events = gateway.events(pending)
    first = await anext(events)  # errors before the first token keep their HTTP status
    version = str(getattr(first, "model_version", ""))
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    stream = sse_stream(
        first,
        events,
        request_id=pending.request_id,
        model=body.model,
        chat=chat,
        n=body.n,
        include_usage=include_usage,
    )
    return StreamingResponse(
        stream,
        media_type="text/event-stream",
        headers={"x-llmops-model-version": version, "cache-control": "no-cache"},
    )


@router.post("/v1/completions")
async def completions(request: Request) -> Response:
    gateway = _gateway(request)
    key = gateway.authenticate(request.headers.get("authorization"), Action.INFER)
    body = await _parse(request, CompletionRequest)
    prompts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
    if len(prompts) != 1:
        raise APIError(400, "Send one prompt per request.", param="prompt")
    gateway.validate(body, len(prompts[0]))
    gateway.admit(key)
    request.state.key = key
    return await _complete(request, body, chat=False, prompt=prompts[0])


@router.post("/v1/chat/completions")
async def chat_completions(request: Request) -> Response:
    gateway = _gateway(request)
    key = gateway.authenticate(request.headers.get("authorization"), Action.INFER)
    body = await _parse(request, ChatCompletionRequest)
    messages = [ChatMessage(role=m.role, content=m.text()) for m in body.messages]
    gateway.validate(body, sum(len(m.content) for m in messages))
    gateway.admit(key)
    request.state.key = key
    return await _complete(request, body, chat=True, messages=messages)


@router.post("/v1/feedback")
async def feedback(request: Request) -> dict[str, Any]:
    gateway = _gateway(request)
    key = gateway.authenticate(request.headers.get("authorization"), Action.FEEDBACK)
    body = await _parse(request, FeedbackRequest)
    if body.rating is None and not body.correction and not body.comment:
        raise APIError(400, "Give a rating, a correction or a comment.", param="rating")
    event = await gateway.publisher.publish(
        FeedbackReceived(
            response_id=body.response_id,
            rating=body.rating,
            correction=body.correction,
            comment=body.comment,
            key_id=key.key_id,
        )
    )
    return {"id": str(event.event_id), "object": "feedback", "status": "accepted"}


@router.post("/v1/keys")
async def create_key(request: Request) -> dict[str, Any]:
    gateway = _gateway(request)
    admin = gateway.authenticate(request.headers.get("authorization"), Action.MANAGE_KEYS)
    body = await _parse(request, KeyCreateRequest)
    try:
        role = Role(body.role)
    except ValueError:
        raise APIError(
            400, f"role must be one of {[r.value for r in Role]}", param="role"
        ) from None
    secret = new_secret()
    info = request.app.state.key_store.add(
        secret,
        body.name,
        role,
        body.rpm or gateway.settings.default_rpm,
        body.tpm or gateway.settings.default_tpm,
    )
    await gateway.publisher.publish(
        AuditRecorded(
            action="key.create",
            actor=admin.key_id,
            allowed=True,
            target=info.key_id,
            details={"role": role.value},
        )
    )
    return {
        "key": secret,
        "key_id": info.key_id,
        "name": info.name,
        "role": role.value,
        "rpm": info.rpm,
        "tpm": info.tpm,
    }


@router.get("/v1/keys")
async def list_keys(request: Request) -> dict[str, Any]:
    _gateway(request).authenticate(request.headers.get("authorization"), Action.MANAGE_KEYS)
    rows = request.app.state.key_store.list()
    return {
        "data": [
            {
                "key_id": k.key_id,
                "name": k.name,
                "role": k.role.value,
                "rpm": k.rpm,
                "tpm": k.tpm,
                "created_at": created.isoformat(),
                "revoked": revoked,
            }
            for k, created, revoked in rows
        ]
    }


@router.delete("/v1/keys/{key_id}")
async def revoke_key(request: Request, key_id: str) -> dict[str, Any]:
    gateway = _gateway(request)
    admin = gateway.authenticate(request.headers.get("authorization"), Action.MANAGE_KEYS)
    if not request.app.state.key_store.revoke(key_id):
        raise APIError(404, f"No key {key_id}.", code="not_found")
    await gateway.publisher.publish(
        AuditRecorded(action="key.revoke", actor=admin.key_id, allowed=True, target=key_id)
    )
    return {"key_id": key_id, "revoked": True}


@router.get("/healthz")
async def healthz(request: Request) -> JSONResponse:
    gateway = _gateway(request)
    ready = bool(request.app.state.ready)
    workers = len(gateway.directory.live(time.time()))
    body = {
        "status": "ok" if ready else "starting",
        "service": "gateway",
        "checks": {"started": ready},
        "workers": workers,
    }
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get("/metrics")
async def metrics_endpoint() -> Response:
    payload, content_type = prometheus_payload()
    return Response(payload, media_type=content_type)
