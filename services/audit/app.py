"""Composition root of the audit service."""

from __future__ import annotations

from faststream.asgi import AsgiFastStream

from services.audit import handlers
from services.audit.adapters.api import build_api
from services.audit.adapters.store import SqlAuditLog
from services.audit.config import AuditSettings
from shared.runtime import Runtime, build_runtime, key_registry, make_app


def build(settings: AuditSettings | None = None) -> tuple[Runtime, AsgiFastStream]:
    settings = settings or AuditSettings()
    runtime = build_runtime(settings, "audit")
    assert runtime.engine is not None
    handlers.register(runtime.bus, settings.consumer_group, lambda uow: SqlAuditLog(uow.session))
    keys = key_registry(runtime)
    runtime.checks["key_registry"] = keys.loaded
    api = build_api(runtime.engine, keys, settings.max_page)
    return runtime, make_app(runtime, web=api)
