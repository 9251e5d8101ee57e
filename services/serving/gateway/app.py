"""Composition root of the gateway: settings -> runtime (broker, bus, DB) -> Gateway -> FastAPI."""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from aiokafka.errors import KafkaError
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from services.serving.gateway.adapters.cancels import KafkaCanceller
from services.serving.gateway.adapters.key_store import RegistryLookup, SqlKeyStore
from services.serving.gateway.adapters.replies import ReplyRouter
from services.serving.gateway.adapters.sentence_embedder import SentenceEmbedder
from services.serving.gateway.admin import KeyAdmin
from services.serving.gateway.api_router import openapi_with_bodies, router
from services.serving.gateway.config import GatewaySettings
from services.serving.gateway.embeddings import Embeddings
from services.serving.gateway.keys import Role
from services.serving.gateway.protocol import APIError
from services.serving.gateway.serving import Gateway
from services.serving.gateway.workers import WorkerDirectory
from services.serving.wire import HEARTBEAT_TOPIC, ensure_serving_topics
from shared.cpus import keep_off_engine_cores
from shared.events import ApiKeyChanged
from shared.keys import ROOT_NAME, ROOT_RPM, ROOT_TPM
from shared.runtime import Runtime, build_runtime, key_registry
from shared.telemetry import shutdown_telemetry
from shared.topics import CANCEL_TOPIC, bootstrap_for
from shared.wire import create_channel, delete_reply_topic, reply_topic

log = logging.getLogger(__name__)


def build(settings: GatewaySettings | None = None) -> tuple[Runtime, FastAPI]:
    settings = settings or GatewaySettings()
    runtime = build_runtime(settings, "gateway")
    assert runtime.engine is not None
    gateway_id = settings.id or uuid.uuid4().hex[:12]
    topic = reply_topic(gateway_id)
    directory = WorkerDirectory(settings.worker_timeout_s)
    # requests, replies, heartbeats and cancels are serving hops: the in-memory broker of
    # the embedded stack (shared.topics.is_ephemeral); a Kafka cluster carries them too
    hops = bootstrap_for(topic, settings)
    replies = ReplyRouter(
        hops,
        topic,
        HEARTBEAT_TOPIC,
        directory,
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
        idle_fetch_max_wait_ms=settings.idle_fetch_max_wait_ms,
    )
    store = SqlKeyStore(runtime.engine)
    registry = key_registry(runtime)
    gateway = Gateway(
        settings,
        keys=RegistryLookup(registry),
        publisher=runtime.bus,
        replies=replies,
        cancels=KafkaCanceller(runtime.broker_for(CANCEL_TOPIC)),
        directory=directory,
        reply_topic=topic,
    )
    bootstrap = settings.bootstrap_servers
    # the longest a fetch of the reply router may still wait on the topic once it has stopped
    fetch_wait_s = replies.pace.idle_ms / 1000  # FetchPace: the longer of its two waits

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await ensure_serving_topics(
            bootstrap, settings.replication_factor, ephemeral_bootstrap=hops
        )
        await create_channel(hops, topic, settings.replication_factor)
        try:
            if root_hash := settings.admin_key_hash():
                # the root key, listed and revocable like any key; a revoked one stays revoked
                store.ensure(root_hash, ROOT_NAME, Role.ADMIN, rpm=ROOT_RPM, tpm=ROOT_TPM)
            await runtime.broker.start()
            await runtime.bus.start()
            await key_admin.republish()
            await replies.start()
        except BaseException:  # a failed start leaves no reply topic behind
            await delete_reply_topic(hops, topic, fetch_wait_s=fetch_wait_s)
            raise
        app.state.ready = True
        log.info("gateway ready", extra={"gateway_id": gateway_id, "reply_topic": topic})
        try:
            yield
        finally:
            app.state.ready = False
            async with AsyncExitStack() as stopping:  # each step runs, whatever the one before did
                stopping.callback(shutdown_telemetry)
                if runtime.engine is not None:
                    stopping.callback(runtime.engine.dispose)
                stopping.push_async_callback(runtime.broker.stop)
                stopping.push_async_callback(runtime.bus.stop)
                stopping.push_async_callback(
                    delete_reply_topic, hops, topic, fetch_wait_s=fetch_wait_s
                )
                await replies.stop()
            log.info("gateway stopped", extra={"gateway_id": gateway_id, "reply_topic": topic})

    app = FastAPI(title="llmops gateway", lifespan=lifespan, docs_url="/docs")
    app.state.ready = False
    app.state.gateway = gateway
    key_admin = KeyAdmin(gateway, store, runtime.bus, settings, registry.view)
    reasserting: set[asyncio.Task[bool]] = set()

    def watch(record: ApiKeyChanged) -> None:  # the issuer answers a replayed "live" record
        task = asyncio.get_running_loop().create_task(key_admin.reassert(record))
        reasserting.add(task)
        task.add_done_callback(reasserting.discard)

    registry.on_applied = watch
    app.state.key_admin = key_admin
    app.state.key_registry = registry
    embedder = SentenceEmbedder(settings.embedding_model, settings.embedding_path)
    app.state.embeddings = Embeddings(gateway, embedder)
    app.state.gateway_id = gateway_id
    app.state.reply_loop = replies.alive
    app.include_router(router)
    app.openapi = lambda: openapi_with_bodies(app)  # type: ignore[method-assign]

    @app.exception_handler(APIError)
    async def api_error(_request: Request, exc: APIError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(Exception)
    async def unexpected(_request: Request, exc: Exception) -> JSONResponse:
        unavailable = isinstance(exc, KafkaError)
        log.error("request failed", extra={"error": type(exc).__name__})  # never the body
        error = APIError(
            503 if unavailable else 500,
            "The platform cannot take requests right now." if unavailable else "Internal error.",
            type_="server_error",
        )
        return JSONResponse(error.body(), status_code=error.status)

    return runtime, app


def port(settings: GatewaySettings) -> int:
    return settings.port or settings.admin_port or 8000


def create_app() -> FastAPI:
    """One of ``LLMOPS_GATEWAY_WORKERS`` processes sharing the port (uvicorn's factory): an
    instance of its own, with its own reply topic (``<id>-<pid>`` when an id is set)."""
    settings = GatewaySettings()
    if settings.id and settings.workers > 1:
        settings = settings.model_copy(update={"id": f"{settings.id}-{os.getpid()}"})
    keep_off_engine_cores(settings.keep_off_engine_cores_s)  # each process: shared.cpus
    return build(settings)[1]
