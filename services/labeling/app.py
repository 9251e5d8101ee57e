"""Composition root: settings -> runtime (broker, bus, DB) -> service -> handlers -> FastAPI.

One process serves the bus handlers, the REST API, the web UI, /healthz and /metrics on one
port (LLMOPS_LABELING_PORT, default 8100).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from services.labeling import handlers, ui
from services.labeling.adapters import store as _tables  # noqa: F401 (registers the tables)
from services.labeling.api import router
from services.labeling.auth import KeyRing
from services.labeling.config import LabelingSettings
from services.labeling.curator import Curator
from services.labeling.schema import LabelError
from services.labeling.service import ConflictError, Labeling, NotFoundError
from services.labeling.suggester import ModelSuggester
from shared.runtime import Runtime, build_runtime, health, key_registry
from shared.telemetry import prometheus_payload, shutdown_telemetry
from shared.topics import bootstrap_for
from shared.wire import create_channel, reply_topic

log = logging.getLogger(__name__)


def build(settings: LabelingSettings | None = None) -> tuple[Runtime, FastAPI]:
    settings = settings or LabelingSettings()
    runtime = build_runtime(settings, "labeling")
    assert runtime.engine is not None
    labeling = Labeling(lease_s=settings.lease_s)
    curator = Curator(runtime.artifacts, labeling)
    labeling.on_final = curator.maybe_cut  # a version every N final labels
    replies = reply_topic(settings.suggest_reply_id)
    suggester = ModelSuggester(
        labeling, runtime.bus, replies, interval_s=settings.suggest_interval_s
    )
    handlers.register(
        runtime.bus,
        settings.consumer_group,
        curator,
        on_tasks=suggester.kick,
    )
    handlers.register_replies(
        runtime.broker_for(replies),
        replies,
        suggester,
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
    )
    runtime.checks["model_suggestions"] = suggester.alive
    registry = key_registry(runtime)  # the platform's API keys (annotator role and above)
    runtime.checks["key_registry"] = registry.loaded

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await create_channel(bootstrap_for(replies, settings), replies, settings.replication_factor)
        await runtime.broker.start()
        await runtime.bus.start()
        await suggester.start()
        runtime.ready.set()
        log.info("labeling ready", extra={"port": settings.serve_port()})
        try:
            yield
        finally:
            runtime.ready.clear()
            await suggester.stop()
            await runtime.bus.stop()
            await runtime.broker.stop()
            if runtime.engine is not None:
                runtime.engine.dispose()
            shutdown_telemetry()

    app = FastAPI(title="llmops labeling", lifespan=lifespan, docs_url="/docs")
    app.state.engine = runtime.engine
    app.state.bus = runtime.bus
    app.state.labeling = labeling
    app.state.curator = curator
    app.state.suggester = suggester
    app.state.keys = KeyRing(runtime.engine, registry)
    app.state.command_wait_s = settings.command_wait_s
    app.include_router(router)
    app.include_router(ui.router)
    app.mount("/static", StaticFiles(directory=ui.STATIC), name="static")

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        status, body = await health(runtime)
        return JSONResponse(body, status_code=status)

    @app.get("/metrics")
    async def metrics() -> Response:
        payload, content_type = prometheus_payload()
        return Response(payload, media_type=content_type)

    @app.exception_handler(NotFoundError)
    async def not_found(_r: Request, exc: NotFoundError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(ConflictError)
    async def conflict(_r: Request, exc: ConflictError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=409)

    @app.exception_handler(LabelError)
    async def bad_label(_r: Request, exc: LabelError) -> JSONResponse:
        return JSONResponse({"detail": str(exc), "allowed": exc.allowed}, status_code=422)

    @app.exception_handler(ValueError)
    async def bad_value(_r: Request, exc: ValueError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=422)

    return runtime, app
