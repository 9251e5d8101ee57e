"""Composition root: settings -> runtime -> Presidio + vault + service -> handlers -> app."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

from sqlmodel import Session

from services.anonymization import handlers
from services.anonymization.adapters import store  # registers the tables before create_all
from services.anonymization.adapters.keyfile import VaultKeks, kek_path, load_keyring
from services.anonymization.config import AnonymizationSettings
from services.anonymization.domain import Anonymizer, Operators
from services.anonymization.keys import KeyRing
from services.anonymization.known import KnownPolicy
from services.anonymization.ports import PiiEngine
from services.anonymization.service import AnonymizationService
from shared.runtime import Runtime, build_runtime, key_registry, make_app

DEFAULT_PORT = 9102


class LazyEngine:
    """The PiiEngine port, filled in by the lifespan (Presidio loads there, not at import)."""

    def __init__(self) -> None:
        self.target: PiiEngine | None = None

    def process(self, texts: Any, replace: Any) -> Any:
        if self.target is None:
            raise RuntimeError("the PII engine is not loaded yet")
        return self.target.process(texts, replace)


def build(
    settings: AnonymizationSettings | None = None, engine: PiiEngine | None = None
) -> tuple[Runtime, Any]:
    """The runtime and the ASGI app; ``engine`` replaces Presidio (tests use a fake)."""
    settings = settings or AnonymizationSettings()
    runtime = build_runtime(settings, "anonymization")
    keys = load_keyring(settings.pseudonym_key, settings.data_dir)
    lazy = LazyEngine()
    lazy.target = engine
    operators = Operators(
        keys, settings.operators, settings.default_operator, settings.token_length
    )
    anonymizer = Anonymizer(
        lazy,
        operators,
        settings.subject_entities,
        max_chunk_chars=settings.max_chunk_chars,
        known_policy=KnownPolicy(
            enabled=settings.known_values, min_score=settings.known_values_min_score
        ),
    )
    service = AnonymizationService(
        anonymizer, runtime.artifacts, settings.claim_threshold_bytes, runtime.transit
    )
    vault_for = partial(vault_factory, keys=keys, keks=VaultKeks(keys, kek_path(settings.data_dir)))
    handlers.register(runtime, service, vault_for, settings.consumer_group)
    # the platform's key registry, for the admin API (the bus's view when it checks commands)
    api_keys = key_registry(runtime, attach=bool(settings.api_port))
    if settings.api_port:
        runtime.checks["key_registry"] = api_keys.loaded
    runtime.state.update(
        service=service, keys=keys, vault_for=vault_for, engine=lazy, api_keys=api_keys
    )
    runtime.checks["pii_engine"] = lambda: lazy.target is not None

    @contextlib.asynccontextmanager
    async def lifespan(rt: Runtime) -> AsyncIterator[None]:
        if lazy.target is None:
            from services.anonymization.adapters.presidio import PresidioEngine

            lazy.target = PresidioEngine(settings)
        async with contextlib.AsyncExitStack() as stack:
            if settings.api_port:
                from services.anonymization.adapters.api import build_api, serve_api

                api = build_api(
                    rt,
                    vault_for,
                    api_keys,
                    keys.subject_ref,
                    max_body_bytes=settings.api_max_body_bytes,
                    rate_per_minute=settings.api_rate_per_minute,
                )
                await stack.enter_async_context(
                    serve_api(api, settings.api_host, settings.api_port)
                )
            yield

    return runtime, make_app(runtime, lifespan=lifespan)


def vault_factory(
    session: Session, *, keys: KeyRing, keks: VaultKeks | None = None
) -> store.SqlVault:
    return store.SqlVault(session, keys, keks)
