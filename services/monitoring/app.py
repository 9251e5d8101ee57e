"""Composition root: settings -> runtime -> embedder + service + poller -> handlers -> FastAPI."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from services.monitoring import api, handlers
from services.monitoring.adapters import store  # registers the tables before create_all
from services.monitoring.adapters.store import SqlRepository
from services.monitoring.config import MonitoringSettings
from services.monitoring.pipeline import PipelinePoller
from services.monitoring.ports import Embedder
from services.monitoring.service import MonitoringService
from shared.runtime import Runtime, build_runtime, key_registry
from shared.telemetry import shutdown_telemetry

log = logging.getLogger(__name__)
DEFAULT_PORT = 8200
__all__ = ["DEFAULT_PORT", "build", "port", "store"]


def build(
    settings: MonitoringSettings | None = None, embedder: Embedder | None = None
) -> tuple[Runtime, FastAPI]:
    """The runtime and the ASGI app; ``embedder`` replaces MiniLM (tests may pass a fake)."""
    settings = settings or MonitoringSettings()
    runtime = build_runtime(settings, "monitoring")
    assert runtime.engine is not None
    service = MonitoringService(settings, embedder, read_claim=runtime.artifacts.get_bytes)
    handlers.register(runtime, service, settings.consumer_group)

    def raise_alerts(found: list[tuple[str, str, dict[str, str]]]) -> None:
        with runtime.bus.unit_of_work() as uow:
            for name, summary, labels in found:
                for event in service.alert(SqlRepository(uow.session), None, name, summary, labels):
                    uow.emit(event)

    poller = PipelinePoller(
        settings.bootstrap_servers,
        settings.poll_interval_s,
        raise_alerts,
        settings.slo_lag,
        settings.slo_dlq_growth,
        ephemeral_bootstrap=settings.ephemeral_bootstrap_servers,
    )
    runtime.checks["embedder"] = lambda: service.embedder is not None or not settings.embeddings
    keys = key_registry(runtime)  # the platform's API keys: approvals need an operator key
    runtime.checks["key_registry"] = keys.loaded

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if service.embedder is None and settings.embeddings:
            from services.monitoring.adapters.embedder import MiniLmEmbedder

            service.embedder = await asyncio.to_thread(MiniLmEmbedder, settings.embedding_model)
        await runtime.broker.start()
        await runtime.bus.start()
        poller.start()
        runtime.ready.set()
        log.info("monitoring ready", extra={"port": port(settings)})
        try:
            yield
        finally:
            runtime.ready.clear()
            await poller.stop()
            await runtime.bus.stop()
            await runtime.broker.stop()
            runtime.engine.dispose() if runtime.engine is not None else None
            shutdown_telemetry()

    app = FastAPI(title="llmops monitoring", lifespan=lifespan)
    app.state.runtime = runtime
    app.state.service = service
    app.state.poller = poller
    app.state.keys = keys
    app.include_router(api.router)
    return runtime, app


def port(settings: MonitoringSettings) -> int:
    return settings.port or settings.admin_port or DEFAULT_PORT


def serve(app: Any, settings: MonitoringSettings) -> None:
    import uvicorn

    uvicorn.run(
        app,
        host=settings.host,
        port=port(settings),
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=10,
    )
