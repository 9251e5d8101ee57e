"""Composition root of the ingestion service."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from faststream.asgi import AsgiFastStream

from services.ingestion import handlers
from services.ingestion.adapters.language import detect_language
from services.ingestion.adapters.readers import read_source
from services.ingestion.adapters.sql import SqlErasureStore, SqlJobStore
from services.ingestion.config import IngestionSettings
from services.ingestion.jobs import IngestRunner
from services.ingestion.ports import ErasureStore, JobStore
from shared.runtime import Runtime, build_runtime, make_app


def fingerprint_key(settings: IngestionSettings) -> bytes:
    """The dedup fingerprint key: from settings, else a key file made once per data dir."""
    if settings.fingerprint_key is not None:
        return settings.fingerprint_key.get_secret_value().encode()
    path = Path(settings.data_dir) / "ingestion" / "fingerprint.key"
    if not path.exists():  # made once: processes starting together must agree on one key
        path.parent.mkdir(parents=True, exist_ok=True)
        draft = path.with_name(f".fingerprint.key.{secrets.token_hex(4)}")
        draft.write_text(secrets.token_hex(32))
        draft.chmod(0o600)
        try:
            os.link(draft, path)  # atomic, and fails if another process made it first
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    return path.read_text().strip().encode()


def build(
    settings: IngestionSettings | None = None,
    *,
    jobs: JobStore | None = None,
    erasures: ErasureStore | None = None,
) -> tuple[Runtime, AsgiFastStream]:
    """The service; ``jobs`` and ``erasures`` default to the SQL adapters (tests: fakes)."""
    settings = settings or IngestionSettings()
    runtime = build_runtime(settings, "ingestion")
    assert runtime.engine is not None
    jobs = jobs or SqlJobStore(
        runtime.engine,
        runtime.service,
        runtime.artifacts,
        settings.claim_bytes,
        lease_s=settings.job_lease_s,
    )
    relay = runtime.bus.relay
    runner = IngestRunner(
        jobs,
        settings,
        reader=read_source,
        detect_language=detect_language,
        fingerprint_key=fingerprint_key(settings),
        transit=runtime.transit,
        on_committed=relay.kick if relay is not None else None,
    )
    runtime.state["runner"] = runner
    runtime.state["jobs"] = jobs
    runtime.checks["runner"] = runner.alive
    handlers.register(
        runtime.bus,
        settings.consumer_group,
        jobs=jobs,
        erasures=erasures or SqlErasureStore(),
        on_job_stored=runner.kick,
    )

    @asynccontextmanager
    async def lifespan(_runtime: Runtime) -> AsyncIterator[None]:
        await runner.start()
        try:
            yield
        finally:
            await runner.stop()

    return runtime, make_app(runtime, lifespan=lifespan)
