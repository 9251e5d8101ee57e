"""Loaded engines by version: load before a switch, retire only when idle."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from services.serving.worker.ports import EngineLoader, TextEngine
from services.serving.worker.routing import Version

log = logging.getLogger(__name__)


@dataclass
class _Entry:
    engine: TextEngine
    in_flight: int = 0
    retired: bool = False


class EnginePool:
    def __init__(self, loader: EngineLoader) -> None:
        self.loader = loader
        self.entries: dict[tuple[str, str], _Entry] = {}
        self._loading: dict[tuple[str, str], asyncio.Task[TextEngine]] = {}

    @property
    def in_flight(self) -> int:
        return sum(e.in_flight for e in self.entries.values())

    def loaded(self) -> set[tuple[str, str]]:
        return {k for k, e in self.entries.items() if not e.retired}

    async def ensure(self, version: Version) -> None:
        """Load ``version`` unless it is loaded (concurrent callers share one load)."""
        entry = self.entries.get(version.key)
        if entry is not None:
            entry.retired = False
            return
        task = self._loading.get(version.key)
        if task is None:
            task = asyncio.create_task(self.loader.load(version.location))
            self._loading[version.key] = task
        try:
            engine = await asyncio.shield(task)
        finally:
            self._loading.pop(version.key, None)
        self.entries.setdefault(version.key, _Entry(engine))
        log.info("model loaded", extra={"model": version.name, "version": version.version})

    @asynccontextmanager
    async def use(self, version: Version) -> AsyncIterator[TextEngine]:
        entry = self.entries.get(version.key)
        if entry is None:
            await self.ensure(version)
            entry = self.entries[version.key]
        entry.in_flight += 1
        try:
            yield entry.engine
        finally:
            entry.in_flight -= 1
            if entry.retired and entry.in_flight == 0:
                await self._close(version.key)

    async def retire(self, wanted: set[tuple[str, str]]) -> None:
        """Retire engines not wanted; each closes once its in-flight requests finish."""
        for key, entry in list(self.entries.items()):
            if key in wanted:
                continue
            entry.retired = True
            if entry.in_flight == 0:
                await self._close(key)

    async def _close(self, key: tuple[str, str]) -> None:
        entry = self.entries.pop(key, None)
        if entry is not None:
            log.info("model unloaded", extra={"model": key[0], "version": key[1]})
            await entry.engine.close()

    async def close_all(self) -> None:
        for key in list(self.entries):
            await self._close(key)
