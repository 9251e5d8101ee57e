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
    """Switches versions live: the new engine loads first, the old one drains."""

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
            await self.pool.ensure(version)
        for key in self.table.wanted(self.keep_previous) - self.pool.loaded():
            await self.pool.ensure(self.table.known[key])

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
        await self.promote(
            Version(event.model_name, event.model_version, location),
            event.occurred_at,
            alias=event.alias,
            share=event.traffic_share,
        )
        return True

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
            await self.pool.ensure(version)
            self.table.promote(version, alias, share)
            self._mark(occurred_at)
            await self.pool.retire(self.table.wanted(self.keep_previous))
        log.info(
            "promoted",
            extra={"model": version.name, "version": version.version, "alias": alias},
        )

    async def rollback(self, name: str, to_version: str, occurred_at: datetime) -> None:
        async with self._lock:
            target = self.table.known.get((name, to_version))
            if target is None:
                raise UnknownVersionError(f"{name} {to_version} was never served here")
            await self.pool.ensure(target)
            self.table.rollback(name, to_version)
            self._mark(occurred_at)
            await self.pool.retire(self.table.wanted(self.keep_previous))
        log.info("rolled back", extra={"model": name, "version": to_version})

    def location_of(self, name: str, version: str) -> str | None:
        known = self.table.known.get((name, version))
        return known.location if known else None
