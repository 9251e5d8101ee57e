"""Service plug-ins: each service declares itself once, the platform finds it by entry point.

A service ships ``services/<name>/plugin.py`` with a module-level :class:`ServicePlugin` and
registers it in ``pyproject.toml``::

    [project.entry-points."llmops.services"]
    <name> = "<package>.<name>.plugin:PLUGIN"      # e.g. ingestion, in services/

`llmops up`, `status`, `demo` and the CLI discover services through that entry-point group
(the convention of pytest plugins and Flask/Airflow providers), so this package never names a
service. Hooks are ``"module:attribute"`` references, imported only when used: listing the
services costs no heavy import.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

from shared.settings import port_override
from shared.topics import Topic

ENTRY_POINT_GROUP = "llmops.services"


class PluginError(RuntimeError):
    """A plug-in that cannot be loaded or that declares something inconsistent."""


@dataclass(frozen=True)
class ProcessSpec:
    """One OS process of a service: ``python -m <module>``, health on its admin port.

    The port is ``port`` unless ``port_env`` (e.g. ``LLMOPS_LABELING_PORT``) is set.
    """

    service: str
    name: str
    module: str
    port: int
    port_env: str | None = None
    health_path: str = "/healthz"
    # Nine processes importing torch, transformers, spaCy and vLLM at once share the cores of
    # one small machine: a quiet 2-core box needs minutes, not seconds, to bring them all up,
    # and a busy one (the vLLM worker's engine core imports everything again) up to ten.
    startup_timeout_s: float = 600.0
    serves_api: bool = False
    replica_env: tuple[tuple[str, str], ...] = ()
    """Environment of the extra processes of `llmops up --scale` (e.g. a second listener
    only the first process opens); the first process never gets it. ``{replica}`` in a
    value becomes the process' number (2, 3, ...): a name each process must own."""
    singleton: str | None = None
    """Why only one process of it may run (state one process must hold whole), or None when
    it scales out; `llmops up --scale` refuses more than one, compose/ runs one replica."""

    @property
    def label(self) -> str:
        return self.name if self.name == self.service else f"{self.service}-{self.name}"

    @property
    def resolved_port(self) -> int:
        return port_override(self.port_env) or self.port

    def available(self) -> bool:
        try:
            return importlib.util.find_spec(self.module) is not None
        except ModuleNotFoundError:
            return False


@dataclass(frozen=True)
class ServicePlugin:
    """Everything the platform needs to know about one service."""

    name: str
    description: str
    order: int
    """Position in the loop: start order of its processes and order of its demo stage."""
    processes: tuple[ProcessSpec, ...] = ()
    produces: tuple[Topic, ...] = ()
    consumes: tuple[Topic, ...] = ()
    topic_prefixes: tuple[str, ...] = ()
    """Topics outside the catalogue the service creates, uses and deletes, by name prefix
    (e.g. per-instance reply topics); the production ACLs grant them (shared/deploy/acl.py)."""
    cli: str | None = None
    """``module:function`` taking the ``llmops`` Typer app and adding the service's commands."""
    demo: str | None = None
    """``module:function`` taking a ``DemoContext``: the service's stage of `llmops demo`."""

    def load_cli(self) -> Callable[[Any], None] | None:
        return _load_ref(self.cli, self.name) if self.cli else None

    def load_demo(self) -> Callable[[Any], None] | None:
        return _load_ref(self.demo, self.name) if self.demo else None


def _load_ref(ref: str, plugin: str) -> Any:
    module_name, _, attribute = ref.partition(":")
    try:
        return getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise PluginError(f"plug-in {plugin!r}: cannot load {ref!r}: {exc}") from exc


@cache
def discover() -> tuple[ServicePlugin, ...]:
    """Every installed service plug-in, in loop order."""
    found: dict[str, ServicePlugin] = {}
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            plugin = entry.load()
        except Exception as exc:
            raise PluginError(f"entry point {entry.name!r} ({entry.value}) failed: {exc}") from exc
        if not isinstance(plugin, ServicePlugin):
            raise PluginError(f"entry point {entry.name!r} is not a ServicePlugin: {plugin!r}")
        if plugin.name != entry.name:
            raise PluginError(f"entry point {entry.name!r} declares plug-in {plugin.name!r}")
        found[plugin.name] = plugin
    plugins = tuple(sorted(found.values(), key=lambda p: (p.order, p.name)))
    _check_ports(plugins)
    return plugins


def _check_ports(plugins: tuple[ServicePlugin, ...]) -> None:
    seen: dict[int, str] = {}
    for spec in (p for plugin in plugins for p in plugin.processes):
        other = seen.setdefault(spec.port, spec.label)
        if other != spec.label:
            raise PluginError(f"{spec.label} and {other} both declare port {spec.port}")


def plugin(name: str) -> ServicePlugin:
    for candidate in discover():
        if candidate.name == name:
            return candidate
    raise PluginError(f"no service plug-in named {name!r}")


def processes(only: set[str] | None = None) -> list[ProcessSpec]:
    """Processes of the installed services, filtered by service name or process label."""
    every = [spec for p in discover() for spec in p.processes]
    if only:
        unknown = only - {s.service for s in every} - {s.label for s in every}
        if unknown:
            raise ValueError(f"unknown service(s): {', '.join(sorted(unknown))}")
        every = [s for s in every if s.service in only or s.label in only]
    return [s for s in every if s.available()]


def process_by_label(label: str) -> ProcessSpec | None:
    return next((s for p in discover() for s in p.processes if s.label == label), None)
