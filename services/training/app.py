"""Composition root of the training service."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from faststream.asgi import AsgiFastStream

from services.training import handlers
from services.training.adapters import store  # noqa: F401  (registers the tables)
from services.training.config import TrainingSettings
from services.training.runs import RunQueue
from shared.runtime import Runtime, build_runtime, make_app
from shared.storage import schema_name


def optuna_storage(settings: TrainingSettings) -> Any:
    """Optuna's RDB storage in the service's database (its own schema on PostgreSQL)."""
    import optuna

    url = settings.database_url_for("training")
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        kwargs["connect_args"] = {"timeout": 30}
    elif "{service}" not in (settings.database_url or ""):
        kwargs["connect_args"] = {"options": f"-csearch_path={schema_name('training')}"}
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)


def build(settings: TrainingSettings | None = None) -> tuple[Runtime, AsgiFastStream]:
    settings = settings or TrainingSettings()
    runtime = build_runtime(settings, "training")
    queue = RunQueue(runtime, settings, lambda: optuna_storage(settings))
    runtime.state["queue"] = queue
    runtime.checks["runner"] = queue.alive
    handlers.register(runtime.bus, settings, queue.kick)

    @asynccontextmanager
    async def lifespan(_runtime: Runtime) -> AsyncIterator[None]:
        await queue.start()
        try:
            yield
        finally:
            await queue.stop()

    return runtime, make_app(runtime, lifespan=lifespan)
