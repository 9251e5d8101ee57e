"""Promotions, canaries and rollbacks applied to the worker's table and engines."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

from services.serving.routing import CHAMPION, ModelTable, UnknownVersionError, Version
from services.serving.worker.engines import EnginePool

log = logging.getLogger(__name__)


class ModelControl:
    """Switches versions live: the new engine loads first, the old one drains."""

    def __init__(self, table: ModelTable, pool: EnginePool, *, keep_previous: bool = True) -> None:
        self.table = table
        self.pool = pool
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
