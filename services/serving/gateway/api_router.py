"""Thin routes: parse, call the Gateway, shape the OpenAI response."""

from __future__ import annotations

import time
from typing import Any, TypeVar

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ValidationError

from services.serving.gateway.admin import KeyAdmin
from services.serving.gateway.embeddings import Embeddings
from services.serving.gateway.protocol import (
    APIError,
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
    FeedbackRequest,
    KeyCreateRequest,
)
from services.serving.gateway.responses import Shape, completion_body, sse_stream
from services.serving.gateway.serving import Gateway
from shared.http import BodyTooLargeError, read_body
from shared.telemetry import prometheus_payload

router = APIRouter()
M = TypeVar("M", bound=BaseModel)
BODIES: dict[tuple[str, str], type[BaseModel]] = {
    ("/v1/completions", "post"): CompletionRequest,
    ("/v1/chat/completions", "post"): ChatCompletionRequest,
    ("/v1/embeddings", "post"): EmbeddingRequest,
    ("/v1/feedback", "post"): FeedbackRequest,
    ("/v1/keys", "post"): KeyCreateRequest,
}
"""The JSON body of each route that reads one (they parse it themselves, bounded: ``_parse``)."""


def openapi_with_bodies(app: FastAPI) -> dict[str, Any]:
    """The app's OpenAPI document with the request bodies the routes read themselves, so
    that clients and fuzzers (tests/security/test_http_fuzz.py) see what they accept."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for (path, method), model in BODIES.items():
        body = model.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(body.pop("$defs", {}))
        components[model.__name__] = body
        schema["paths"][path][method]["requestBody"] = {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}
            },
        }
    app.openapi_schema = schema
    return schema


def _gateway(request: Request) -> Gateway:
    return request.app.state.gateway  # type: ignore[no-any-return]


def _admin(request: Request) -> KeyAdmin:
    return request.app.state.key_admin  # type: ignore[no-any-return]


async def _parse(request: Request, model: type[M]) -> M:
    limit = _gateway(request).settings.max_body_bytes
    try:
        raw = await read_body(request, limit)  # a chunked body is cut off at the limit
    except BodyTooLargeError:
        raise APIError(413, f"Request body over {limit} bytes.", code="body_too_large") from None
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
    served = _gateway(request).list_models(request.headers.get("authorization"))
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
            for name, versions in sorted(served.items())
        ],
    }


async def _complete(request: Request, body: CompletionRequest | ChatCompletionRequest) -> Response:
    chat = isinstance(body, ChatCompletionRequest)
    shape = Shape(
        model=body.model,
        chat=chat,
        tool_call=isinstance(body, ChatCompletionRequest) and bool(body.forced_tools()),
        logprobs=body.logprobs_count() is not None,
    )
    answer = await _gateway(request).complete(
        request.headers.get("authorization"),
        body,
        timeout_s=_timeout(request),
        disconnected=request.is_disconnected,
    )
    if answer.result is not None:
        return JSONResponse(
            completion_body(answer.result, shape),
            headers={
                "x-llmops-model-version": answer.model_version,
                "x-llmops-worker": answer.result.worker_id,
            },
        )
    assert answer.first is not None
    assert answer.rest is not None
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    stream = sse_stream(
        answer.first,
        answer.rest,
        request_id=answer.request_id,
        shape=shape,
        include_usage=include_usage,
        backlog=answer.backlog,
    )
    return StreamingResponse(
        stream,
        media_type="text/event-stream",
        headers={"x-llmops-model-version": answer.model_version, "cache-control": "no-cache"},
    )


@router.post("/v1/completions")
async def completions(request: Request) -> Response:
    return await _complete(request, await _parse(request, CompletionRequest))


@router.post("/v1/chat/completions")
async def chat_completions(request: Request) -> Response:
    return await _complete(request, await _parse(request, ChatCompletionRequest))


@router.post("/v1/embeddings")
async def embeddings(request: Request) -> dict[str, Any]:
    body = await _parse(request, EmbeddingRequest)
    use_case: Embeddings = request.app.state.embeddings
    return await use_case.create(request.headers.get("authorization"), body)


@router.post("/v1/feedback")
async def feedback(request: Request) -> dict[str, Any]:
    body = await _parse(request, FeedbackRequest)
    event = await _gateway(request).feedback(request.headers.get("authorization"), body)
    return {"id": str(event.event_id), "object": "feedback", "status": "accepted"}


@router.post("/v1/keys")
async def create_key(request: Request) -> dict[str, Any]:
    body = await _parse(request, KeyCreateRequest)
    return await _admin(request).create(request.headers.get("authorization"), body)


@router.get("/v1/keys")
async def list_keys(request: Request) -> dict[str, Any]:
    return _admin(request).list(request.headers.get("authorization"))


@router.delete("/v1/keys/{key_id}")
async def revoke_key(request: Request, key_id: str) -> dict[str, Any]:
    return await _admin(request).revoke(request.headers.get("authorization"), key_id)


@router.get("/healthz")
async def healthz(request: Request) -> JSONResponse:
    gateway = _gateway(request)
    started = bool(request.app.state.ready)
    replies = bool(started and request.app.state.reply_loop())  # dead: no reply would arrive
    registry = getattr(request.app.state, "key_registry", None)
    keys = bool(started and (registry is None or registry.loaded()))  # the key registry read
    ready = started and replies and keys
    live = gateway.directory.live(time.time())
    body = {
        "status": "ok" if ready else ("failing" if started else "starting"),
        "service": "gateway",
        "gateway_id": getattr(request.app.state, "gateway_id", None),
        "checks": {"started": started, "reply_loop": replies, "key_registry": keys},
        "workers": len(live),
        "in_flight": sum(beat.in_flight for beat in live),  # as of their last heartbeats
    }
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get("/metrics")
async def metrics_endpoint() -> Response:
    payload, content_type = prometheus_payload()
    return Response(payload, media_type=content_type)
