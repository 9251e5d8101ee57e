"""Composition root of a serving worker: settings -> runtime -> engines -> handlers -> app."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC

from faststream.asgi import AsgiFastStream
from sqlalchemy.exc import OperationalError

from services.serving.wire import ensure_serving_topics
from services.serving.worker import handlers
from services.serving.worker.adapters.kafka_sink import KafkaReplySink
from services.serving.worker.adapters.model_source import ModelSource
from services.serving.worker.adapters.state_store import load_snapshot
from services.serving.worker.adapters.vllm_engine import VllmLoader
from services.serving.worker.config import WorkerSettings
from services.serving.worker.control import ModelControl
from services.serving.worker.engines import EnginePool
from services.serving.worker.heartbeat import Heartbeat
from services.serving.worker.inference import InferenceService
from services.serving.worker.ports import EngineLoader, ReplySink
from services.serving.worker.routing import ModelTable, Version
from shared.runtime import Runtime, build_runtime, make_app
from shared.topics import Topic

log = logging.getLogger(__name__)


def _build_runtime(settings: WorkerSettings) -> Runtime:
    """Workers sharing a data dir start together: their `create_all` calls on the same
    SQLite file can race ("table already exists"); the loser simply tries again."""
    for attempt in range(5):
        try:
            return build_runtime(settings, "serving-worker")
        except OperationalError as exc:
            if "already exists" not in str(exc) or attempt == 4:
                raise
            time.sleep(0.2 + random.random())
    raise AssertionError("unreachable")


def build(
    settings: WorkerSettings | None = None,
    loader: EngineLoader | None = None,
    replies: ReplySink | None = None,
) -> tuple[Runtime, AsgiFastStream]:
    """The worker; ``loader`` and ``replies`` (where chunks and results go) default to vLLM
    and the Kafka sink (tests: fakes)."""
    settings = settings or WorkerSettings()
    runtime = _build_runtime(settings)
    worker_id = handlers.new_worker_id(settings)
    # replies and heartbeats are serving hops (the embedded stack's in-memory broker),
    # inference.completed goes to the main log: the sink routes each record by its topic
    sink = KafkaReplySink(
        settings.bootstrap_servers,
        client_id=f"serving-worker-{worker_id}",
        interval_s=settings.stream_interval_ms / 1000,
        ephemeral_bootstrap=settings.ephemeral_bootstrap_servers,
        log_linger_s=settings.log_linger_ms / 1000,
    )
    table = ModelTable()
    pool = EnginePool(loader or VllmLoader(settings), lookup=table.lookup)
    source = ModelSource(handlers.models_dir(settings), runtime.artifacts)
    control = ModelControl(table, pool, source, keep_previous=settings.keep_previous)
    inference = InferenceService(
        table,
        pool,
        replies or sink,
        worker_id=worker_id,
        completed_topic=Topic.INFERENCE_COMPLETED.value,
    )
    pace = handlers.register(
        runtime,
        settings,
        worker_id=worker_id,
        inference=inference,
        control=control,
    )
    runtime.state.update(worker_id=worker_id, table=table, pool=pool, control=control)
    runtime.checks["engine"] = lambda: bool(pool.loaded())

    @asynccontextmanager
    async def lifespan(rt: Runtime) -> AsyncIterator[None]:
        await ensure_serving_topics(
            settings.bootstrap_servers,
            settings.replication_factor,
            ephemeral_bootstrap=settings.ephemeral_bootstrap_servers,
        )
        assert rt.engine is not None
        snapshot = load_snapshot(rt.engine)
        if snapshot is not None and snapshot.body.get("routes"):
            restored = ModelTable.from_dict(snapshot.body)
            table.routes, table.known = restored.routes, restored.known
            applied = snapshot.applied_until
            control.applied_until = (
                applied.replace(tzinfo=applied.tzinfo or UTC) if applied else None
            )
        else:
            path = settings.bootstrap_path or str(await asyncio.to_thread(source.bootstrap))
            table.promote(Version(settings.bootstrap_model, "bootstrap", str(path)))
        await control.start()
        await sink.start()
        heartbeat = Heartbeat(settings, worker_id, table, pool, sink)
        beats = asyncio.create_task(heartbeat.run())
        pacing = asyncio.create_task(pace.run())
        log.info("worker ready", extra={"worker_id": worker_id, "models": table.names()})
        try:
            yield
        finally:
            for task in (beats, pacing):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await heartbeat.beat("stopping")
            await sink.flush()
            await sink.stop()
            await pool.close_all()

    return runtime, make_app(runtime, lifespan=lifespan)
