"""Composition root of the ingestion service."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from faststream.asgi import AsgiFastStream

from services.ingestion import handlers
from services.ingestion.adapters.language import detect_language
from services.ingestion.adapters.readers import read_source
from services.ingestion.config import IngestionSettings
from services.ingestion.jobs import IngestRunner
from shared.runtime import Runtime, build_runtime, make_app


def fingerprint_key(settings: IngestionSettings) -> bytes:
    """The dedup fingerprint key: from settings, else a key file made once per data dir."""
    if settings.fingerprint_key is not None:
        return settings.fingerprint_key.get_secret_value().encode()
    path = Path(settings.data_dir) / "ingestion" / "fingerprint.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_hex(32))
        path.chmod(0o600)
    return path.read_text().strip().encode()


def build(settings: IngestionSettings | None = None) -> tuple[Runtime, AsgiFastStream]:
    settings = settings or IngestionSettings()
    runtime = build_runtime(settings, "ingestion")
    runner = IngestRunner(
        runtime, settings, read_source, detect_language, fingerprint_key(settings)
    )
    runtime.state["runner"] = runner
    runtime.checks["runner"] = runner.alive
    handlers.register(runtime.bus, settings.consumer_group, runner.kick, runtime.artifacts)

    @asynccontextmanager
    async def lifespan(_runtime: Runtime) -> AsyncIterator[None]:
        await runner.start()
        try:
            yield
        finally:
            await runner.stop()

    return runtime, make_app(runtime, lifespan=lifespan)
