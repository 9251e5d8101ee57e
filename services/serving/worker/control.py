"""Promotions, canaries and rollbacks applied to the worker's table and engines."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

from services.serving.worker.engines import EnginePool
from services.serving.worker.ports import ModelLocator
from services.serving.worker.routing import CHAMPION, ModelTable, UnknownVersionError, Version
from shared.events import ModelPromoted, ModelRolledBack

log = logging.getLogger(__name__)


class ModelControl:
    """Switches versions live: the new engine loads first, the old one drains. A LoRA
    adapter is added to its base's running engine instead (no new engine)."""

    def __init__(
        self,
        table: ModelTable,
        pool: EnginePool,
        locator: ModelLocator,
        *,
        keep_previous: bool = True,
    ) -> None:
        self.table = table
        self.pool = pool
        self.locator = locator
        self.keep_previous = keep_previous
        self.applied_until: datetime | None = None  # newest control event reflected in table
        self._lock = asyncio.Lock()

    def is_stale(self, occurred_at: datetime) -> bool:
        """Already reflected (a replay after restart): skip without reloading anything."""
        return self.applied_until is not None and occurred_at <= self.applied_until

    def _mark(self, occurred_at: datetime) -> None:
        if self.applied_until is None or occurred_at > self.applied_until:
            self.applied_until = occurred_at

    async def start(self) -> None:
        """Load everything the table wants (champions first) and nothing else."""
        for version, _alias, _share in self.table.served():
            await self._ensure(version)
        for key in self.table.wanted(self.keep_previous) - self.pool.loaded():
            await self._ensure(self.table.known[key])

    async def _ensure(self, version: Version) -> None:
        await self.pool.ensure(version, self.table.full_version(version))

    async def apply_promotion(self, event: ModelPromoted) -> bool:
        """Apply a promotion unless already reflected; True if the table changed."""
        if self.is_stale(event.occurred_at):
            return False
        location = (
            self.locator.resolve(event.artifact)
            if event.artifact is not None
            else self.location_of(event.model_name, event.model_version)
        )
        if location is None:
            raise FileNotFoundError(f"{event.model_name} {event.model_version}: no artifact")
        declared = self.locator.adapter_base(location)
        base = None if declared is None else self.base_for(event.model_name, declared).key
        await self.promote(
            Version(event.model_name, event.model_version, location, base),
            event.occurred_at,
            alias=event.alias,
            share=event.traffic_share,
        )
        return True

    def base_for(self, name: str, declared: str) -> Version:
        """The loaded full version a LoRA adapter of model ``name`` runs on. ``declared`` is
        the adapter's ``base_model_name_or_path``: a served model name, or a path holding
        the same weights as a loaded version (the bootstrap model built elsewhere counts);
        failing both, the full model that serves ``name`` now (an adapter of one's own
        model). UnknownVersionError if none fits."""
        fulls = [self.table.full_version(v) for v, _alias, _share in self.table.served()]
        loaded = [self.table.known[k] for k in self.table.wanted(self.keep_previous)]
        candidates = list(dict.fromkeys([*fulls, *(v for v in loaded if not v.is_adapter)]))
        route = self.table.routes.get(declared)
        if route is not None:
            return self.table.full_version(route.champion)
        for version in candidates:
            if declared and self.locator.same_model(declared, version.location):
                return version
        own = self.table.routes.get(name)
        if own is not None:
            log.warning(
                "adapter base not found; using the model's own base",
                extra={"model": name, "declared_base": declared[:200]},
            )
            return self.table.full_version(own.champion)
        raise UnknownVersionError(f"{name}: no loaded base model matches {declared!r}")

    async def apply_rollback(self, event: ModelRolledBack) -> bool:
        """Apply a rollback unless already reflected; True if the table changed."""
        if self.is_stale(event.occurred_at):
            return False
        await self.rollback(event.model_name, event.to_version, event.occurred_at)
        return True

    async def promote(
        self,
        version: Version,
        occurred_at: datetime,
        alias: str = CHAMPION,
        share: float = 1.0,
    ) -> None:
        async with self._lock:
            if version.base is not None and version.base not in self.table.known:
                raise UnknownVersionError(f"{version.name} {version.version}: unknown base")
            await self.pool.ensure(
                version, self.table.known[version.base] if version.base else None
            )
            self.table.promote(version, alias, share)
            self._mark(occurred_at)
            await self.pool.retire(self.table.wanted(self.keep_previous))
        log.info(
            "promoted",
            extra={
                "model": version.name,
                "version": version.version,
                "alias": alias,
                "adapter_on": "/".join(version.base) if version.base else None,
            },
        )

    async def rollback(self, name: str, to_version: str, occurred_at: datetime) -> None:
        async with self._lock:
            target = self.table.known.get((name, to_version))
            if target is None:
                raise UnknownVersionError(f"{name} {to_version} was never served here")
            await self._ensure(target)
            self.table.rollback(name, to_version)
            self._mark(occurred_at)
            await self.pool.retire(self.table.wanted(self.keep_previous))
        log.info("rolled back", extra={"model": name, "version": to_version})

    def location_of(self, name: str, version: str) -> str | None:
        known = self.table.known.get((name, version))
        return known.location if known else None
