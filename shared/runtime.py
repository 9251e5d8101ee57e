"""Building blocks every composition root uses: runtime resources, admin routes, runner.

A service's ``app.py`` builds its settings, calls ``build_runtime``, registers its handlers
on ``runtime.bus``, and returns ``make_app(runtime, lifespan=...)``; ``__main__`` calls
``run_app``. Nothing else creates brokers, engines or stores.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from faststream.asgi import AsgiFastStream
from faststream.kafka import KafkaBroker
from sqlalchemy.engine import Engine

from shared.authority import Verifier, signer_for
from shared.bus import EventBus, make_broker
from shared.keys import KeyRegistry
from shared.settings import ServiceSettings
from shared.storage import ArtifactStore, engine_for
from shared.telemetry import prometheus_payload, setup_telemetry, shutdown_telemetry

log = logging.getLogger(__name__)

HealthCheck = Callable[[], bool | Awaitable[bool]]


@dataclass
class Runtime:
    """The resources of one service process."""

    service: str
    settings: ServiceSettings
    broker: KafkaBroker
    bus: EventBus
    engine: Engine | None
    artifacts: ArtifactStore
    transit: ArtifactStore
    checks: dict[str, HealthCheck] = field(default_factory=dict)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    state: dict[str, Any] = field(default_factory=dict)
    # the API key registry view the bus checks user-signed commands against (None: no checks)
    keys: KeyRegistry | None = None

    def broker_for(self, topic: str) -> KafkaBroker:
        """The broker that carries ``topic`` (``shared.topics.bootstrap_for``): the serving
        hops' second broker when it exists (started and stopped by the bus), else ``broker``."""
        return self.bus.broker_for(topic)


_gc_tuned = False


def tune_gc(gen0_threshold: int) -> bool:
    """Garbage collection for a long-running service, once per process (``build_runtime``
    calls it with ``LLMOPS_GC_GEN0_THRESHOLD``; 0 leaves Python's settings).

    Everything alive now (modules, classes, settings: hundreds of thousands of objects in a
    service that imports torch or vLLM) moves to the permanent generation (``gc.freeze``), so
    no later collection walks it again; gen0 collects after ``gen0_threshold`` allocations
    instead of 700. Why: a service allocates short-lived container objects per event (spans,
    messages, pydantic models); the ones alive at a young collection (spans waiting for the
    batch exporter) get promoted and bring on full collections, each of which walked the
    whole heap. Measured in benchmarks/results/telemetry.md. Returns whether it tuned now.
    """
    global _gc_tuned
    if _gc_tuned or gen0_threshold <= 0:
        return False
    _gc_tuned = True
    gc.collect()  # garbage of the imports goes first, then what is left is frozen
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(gen0_threshold, gen1, gen2)
    return True


def build_runtime(settings: ServiceSettings, service: str, *, database: bool = True) -> Runtime:
    setup_telemetry(
        service,
        otlp_endpoint=settings.otlp_endpoint,
        spans_file=settings.spans_file,
        log_level=settings.log_level,
        log_format=settings.log_format,
    )
    broker = make_broker(settings, client_id=service)
    # the serving hops (shared.topics.is_ephemeral) on a broker of their own when they live
    # elsewhere (the embedded stack's in-memory broker beside the durable log)
    hot_broker = (
        make_broker(settings, client_id=service, bootstrap=settings.ephemeral_bootstrap_servers)
        if settings.ephemeral_bootstrap_servers != settings.bootstrap_servers
        else None
    )
    engine = (
        engine_for(
            settings.database_url_for(service),
            service,
            raw_url=settings.database_url,
            module=_process_module(service),
        )
        if database
        else None
    )
    transit = ArtifactStore(settings.transit_root)
    keys: KeyRegistry | None = None
    if settings.require_authority:
        # users sign commands with their own keys, registered on the API key registry
        keys = KeyRegistry(settings)
        keys.attach(broker)
    bus = EventBus(
        broker,
        engine,
        service=service,
        attempts=settings.handler_attempts,
        backoff_s=settings.retry_backoff_s,
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
        session_timeout_ms=settings.session_timeout_ms,
        signer=signer_for(settings),
        verifier=Verifier(settings, users=keys) if settings.require_authority else None,
        transit=transit,  # a raw hop's dead letters keep their bytes there, not in the DLQ
        hot_broker=hot_broker,
    )
    if settings.require_authority and not settings.authority_signing_key():
        log.warning(
            "no service signing key (LLMOPS_AUTHORITY_KEY[_FILE]): commands it issues are unsigned"
        )
    tune_gc(settings.gc_gen0_threshold)  # after the imports and the service's own objects
    return Runtime(
        service=service,
        settings=settings,
        broker=broker,
        bus=bus,
        engine=engine,
        artifacts=ArtifactStore(settings.artifact_root),
        transit=transit,
        keys=keys,
    )


def key_registry(runtime: Runtime, *, attach: bool = True) -> KeyRegistry:
    """The process' one view of the API key registry, for its HTTP API: the bus's
    (``runtime.keys``, when commands are checked), else a new one, attached to the broker
    unless ``attach=False``. One view per process: one consumer reading the topic."""
    if runtime.keys is None:
        runtime.keys = KeyRegistry(runtime.settings)
        if attach:
            runtime.keys.attach(runtime.broker)
    return runtime.keys


def _process_module(service: str) -> str | None:
    """The module of the plug-in process a runtime name stands for (its migrations' home)."""
    from shared.plugins import PluginError, discover

    try:
        specs = [spec for plugin in discover() for spec in plugin.processes]
    except PluginError:
        return None
    for spec in specs:
        if service in (spec.label, spec.name):
            return spec.module
    return None


def _json(body: dict[str, Any], status: int = 200) -> tuple[int, bytes, str]:
    return status, json.dumps(body).encode(), "application/json"


def _asgi(handler: Callable[[], Awaitable[tuple[int, bytes, str]]]) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        status, body, content_type = await handler()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", content_type.encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})

    return app


async def health(runtime: Runtime) -> tuple[int, dict[str, Any]]:
    results: dict[str, bool] = {"started": runtime.ready.is_set()}
    for name, check in runtime.checks.items():
        try:
            outcome = check()
            results[name] = bool(await outcome if asyncio.iscoroutine(outcome) else outcome)
        except Exception:
            results[name] = False
    ok = all(results.values())
    return (200 if ok else 503), {
        "status": "ok" if ok else "starting" if not runtime.ready.is_set() else "unhealthy",
        "service": runtime.service,
        "checks": results,
        # group -> topics: `llmops status` and `down` read lag for exactly these groups
        "consumer_groups": {g: sorted(t) for g, t in runtime.bus.groups.items()},
    }


def admin_routes(runtime: Runtime) -> list[tuple[str, Any]]:
    async def healthz() -> tuple[int, bytes, str]:
        status, body = await health(runtime)
        return _json(body, status)

    async def metrics() -> tuple[int, bytes, str]:
        payload, content_type = prometheus_payload()
        return 200, payload, content_type

    return [("/healthz", _asgi(healthz)), ("/metrics", _asgi(metrics))]


Lifespan = Callable[[Runtime], AbstractAsyncContextManager[None]]


class ServiceApp(AsgiFastStream):
    """The service's ASGI app: /healthz and /metrics first, then its own web app (a FastAPI
    API, a UI) for every other path, all on the one admin port."""

    web: Any = None

    async def not_found(self, scope: Any, receive: Any, send: Any) -> None:
        if self.web is not None and scope["type"] == "http":
            await self.web(scope, receive, send)
            return
        await super().not_found(scope, receive, send)


def make_app(runtime: Runtime, lifespan: Lifespan | None = None, web: Any = None) -> AsgiFastStream:
    """A FastStream app with /healthz and /metrics, the bus started and stopped with it.

    ``web`` (any ASGI app, e.g. FastAPI) answers every other HTTP path on the same port.
    """

    @asynccontextmanager
    async def app_lifespan(**_options: Any) -> AsyncIterator[None]:
        if lifespan is not None:
            async with lifespan(runtime):
                yield
        else:
            yield

    async def after_startup() -> None:
        await runtime.bus.start()
        runtime.ready.set()
        log.info("service ready", extra={"service": runtime.service})

    async def on_shutdown() -> None:
        runtime.ready.clear()
        await runtime.bus.stop()
        if runtime.keys is not None:
            await runtime.keys.close()

    async def after_shutdown() -> None:
        if runtime.engine is not None:
            runtime.engine.dispose()
        shutdown_telemetry()

    app = ServiceApp(
        runtime.broker,
        asgi_routes=admin_routes(runtime),
        lifespan=app_lifespan,
        after_startup=[after_startup],
        on_shutdown=[on_shutdown],
        after_shutdown=[after_shutdown],
        logger=logging.getLogger(runtime.service),
    )
    app.web = web
    return app


def run_app(
    app: AsgiFastStream, runtime: Runtime, default_port: int, *, fast_loop: bool = False
) -> None:
    """Serve the app (admin HTTP + broker) until SIGINT/SIGTERM. ``fast_loop``: on uvloop
    when it is installed (as vLLM's own server runs), for a latency-bound service whose
    event loop wakes hundreds of times a second (serving's worker)."""
    port = runtime.settings.admin_port or default_port
    with asyncio.Runner(loop_factory=fast_loop_factory() if fast_loop else None) as runner:
        runner.run(
            app.run(
                log_level=logging.WARNING,
                run_extra_options={"host": runtime.settings.admin_host, "port": port},
            )
        )


def fast_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop factory if uvloop is installed, else None (asyncio's)."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop  # type: ignore[no-any-return]
