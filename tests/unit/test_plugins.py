"""Services are found through the ``llmops.services`` entry points, never named by shared/."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from shared.plugins import ServicePlugin, discover, processes
from shared.topics import Topic

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


def test_every_service_folder_is_a_registered_plugin() -> None:
    folders = {p.parent.name for p in (ROOT / "services").glob("*/plugin.py")}
    names = {p.name for p in discover()}
    assert folders, "no service declares a plug-in"
    assert names == folders, "a plugin.py without an entry point, or the other way round"


def test_plugins_are_consistent() -> None:
    plugins = discover()
    assert [p.order for p in plugins] == sorted(p.order for p in plugins)
    ports = [s.port for p in plugins for s in p.processes]
    assert len(ports) == len(set(ports)), "two processes share a port"
    for plugin in plugins:
        assert isinstance(plugin, ServicePlugin)
        assert plugin.processes, f"{plugin.name} runs no process"
        assert all(isinstance(t, Topic) for t in (*plugin.produces, *plugin.consumes))
        for spec in plugin.processes:
            assert spec.available(), f"{spec.module} is not importable"
        if plugin.cli:
            assert callable(plugin.load_cli())
        if plugin.demo:
            assert callable(plugin.load_demo())


def test_process_selection_by_service_and_label() -> None:
    assert {s.label for s in processes({"serving"})} == {"serving-worker", "serving-gateway"}
    assert [s.label for s in processes({"serving-gateway"})] == ["serving-gateway"]
    with pytest.raises(ValueError, match="unknown service"):
        processes({"nope"})


def test_port_variable_overrides_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = processes({"ingestion"})[0]
    assert spec.port_env
    monkeypatch.setenv(spec.port_env, "19999")
    assert spec.resolved_port == 19999


def test_shared_names_no_service_module() -> None:
    """Statically and through importlib: no string in shared/ is a services.* module path."""
    offenders = []
    for path in (ROOT / "shared").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("services"):
                offenders.append(f"{path}:{node.lineno}")
            if isinstance(node, ast.Import) and any(
                a.name.startswith("services") for a in node.names
            ):
                offenders.append(f"{path}:{node.lineno}")
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and node.value.startswith("services.")
            ):
                offenders.append(f"{path}:{node.lineno}")
    assert not offenders, offenders
