"""Loaded engines by version: load before a switch, retire only when idle.

A full version has an engine of its own. A LoRA adapter version is added to its base's running
engine (no reload) and served through an ``AdapterView`` of it; the base engine stays up while
any adapter on it is wanted or answering.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from services.serving.worker.ports import Adapter, Delta, EngineLoader, Sampling, TextEngine
from services.serving.worker.routing import UnknownVersionError, Version

log = logging.getLogger(__name__)


@dataclass
class _Entry:
    engine: TextEngine
    in_flight: int = 0
    retired: bool = False
    adapter: Adapter | None = None
    base: tuple[str, str] | None = None  # the entry whose engine this adapter runs on


class AdapterView:
    """A TextEngine that is a LoRA adapter on a shared engine: every request passes it."""

    def __init__(self, engine: TextEngine, adapter: Adapter) -> None:
        self.engine = engine
        self.adapter = adapter

    def prompt_tokens(self, prompt: Any) -> list[int]:
        return self.engine.prompt_tokens(prompt)

    def generate(
        self,
        prompt_ids: list[int],
        sampling: Sampling,
        request_id: str,
        adapter: Adapter | None = None,
    ) -> AsyncIterator[list[Delta]]:
        return self.engine.generate(prompt_ids, sampling, request_id, adapter or self.adapter)

    async def add_adapter(self, adapter: Adapter) -> None:
        await self.engine.add_adapter(adapter)

    async def remove_adapter(self, adapter: Adapter) -> None:
        await self.engine.remove_adapter(adapter)

    async def abort(self, request_id: str) -> None:
        await self.engine.abort(request_id)

    async def close(self) -> None:  # the base engine is the pool's to close
        return None


class EnginePool:
    def __init__(
        self,
        loader: EngineLoader,
        lookup: Callable[[tuple[str, str]], Version | None] = lambda key: None,
    ) -> None:
        self.loader = loader
        self.lookup = lookup  # an adapter's base version by key (the table's known versions)
        self.entries: dict[tuple[str, str], _Entry] = {}
        self._loading: dict[tuple[str, str], asyncio.Task[Any]] = {}
        self._adapter_ids = itertools.count(1)  # vLLM's lora_int_id: unique, > 0

    @property
    def in_flight(self) -> int:
        return sum(e.in_flight for e in self.entries.values() if e.adapter is None)

    def loaded(self) -> set[tuple[str, str]]:
        return {k for k, e in self.entries.items() if not e.retired}

    def engines(self) -> dict[tuple[str, str], TextEngine]:
        """The running engines (full versions only), by version."""
        return {k: e.engine for k, e in self.entries.items() if e.adapter is None}

    async def ensure(self, version: Version, base: Version | None = None) -> None:
        """Load ``version`` unless it is loaded (concurrent callers share one load). An
        adapter (``version.base``) needs ``base``, the full version it runs on: its engine
        is loaded if need be, then the adapter is added to it."""
        entry = self.entries.get(version.key)
        if entry is not None:
            entry.retired = False
            if entry.base is not None:
                self.entries[entry.base].retired = False
            return
        task = self._loading.get(version.key)
        if task is None:
            task = asyncio.create_task(self._load(version, base))
            self._loading[version.key] = task
        try:
            new = await asyncio.shield(task)
        finally:
            self._loading.pop(version.key, None)
        self.entries.setdefault(version.key, new)
        log.info(
            "adapter added" if new.adapter else "model loaded",
            extra={"model": version.name, "version": version.version},
        )

    async def _load(self, version: Version, base: Version | None) -> _Entry:
        if version.base is None:
            return _Entry(await self.loader.load(version.location))
        base = base or self.lookup(version.base)
        if base is None or base.key != version.base:
            raise UnknownVersionError(f"{version.name} {version.version}: no base to run on")
        await self.ensure(base)
        engine = self.entries[base.key].engine
        name = f"{version.name}:{version.version}"
        adapter = Adapter(next(self._adapter_ids), name, version.location)
        await engine.add_adapter(adapter)
        return _Entry(engine, adapter=adapter, base=base.key)

    @asynccontextmanager
    async def use(self, version: Version, base: Version | None = None) -> AsyncIterator[TextEngine]:
        entry = self.entries.get(version.key)
        if entry is None:
            await self.ensure(version, base)
            entry = self.entries[version.key]
        # an adapter's request holds its base's engine too: it closes only when both are idle
        keys = [version.key] if entry.base is None else [version.key, entry.base]
        holders = [(key, self.entries[key]) for key in keys]
        for _, held in holders:
            held.in_flight += 1
        try:
            if entry.adapter is None:
                yield entry.engine
            else:
                yield AdapterView(entry.engine, entry.adapter)
        finally:
            for key, held in holders:
                held.in_flight -= 1
                if held.retired and held.in_flight == 0:
                    await self._close(key)

    async def retire(self, wanted: set[tuple[str, str]]) -> None:
        """Retire versions not wanted; each goes once its in-flight requests finish
        (adapters first: they are removed from engines that may stay)."""
        adapters_first = sorted(self.entries.items(), key=lambda kv: kv[1].adapter is None)
        for key, entry in adapters_first:
            if key in wanted or key not in self.entries:
                continue
            entry.retired = True
            if entry.in_flight == 0:
                await self._close(key)

    async def _close(self, key: tuple[str, str]) -> None:
        entry = self.entries.pop(key, None)
        if entry is None:
            return
        if entry.adapter is not None:
            log.info("adapter removed", extra={"model": key[0], "version": key[1]})
            if entry.base in self.entries:  # its engine runs on: free the adapter's slot
                await entry.engine.remove_adapter(entry.adapter)
            return
        for other, adapter in list(self.entries.items()):  # adapters die with their engine
            if adapter.base == key:
                self.entries.pop(other, None)
        log.info("model unloaded", extra={"model": key[0], "version": key[1]})
        await entry.engine.close()

    async def close_all(self) -> None:
        for key in list(self.entries):
            await self._close(key)
