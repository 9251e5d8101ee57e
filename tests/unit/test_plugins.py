"""Services are found through the ``llmops.services`` entry points, never named by shared/."""

from __future__ import annotations

import ast
import fnmatch
import re
from collections.abc import Iterator
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


ACME_PLUGIN = """
from shared.plugins import ProcessSpec, ServicePlugin
from shared.topics import Topic

PLUGIN = ServicePlugin(
    name="acme",
    description="A service the platform has never heard of.",
    order=65,
    processes=(ProcessSpec("acme", "acme", "acme_llmops", 19077, "LLMOPS_ACME_PORT"),),
    consumes=(Topic.MODEL_PROMOTED,),
    produces=(Topic.ALERT_RAISED,),
    cli="acme_llmops.cli:register",
    demo="acme_llmops.demo:run",
)
"""
ACME_CLI = """
import typer

acme_app = typer.Typer(no_args_is_help=True)


@acme_app.command()
def hello() -> None:
    print("hello from acme")


def register(app: typer.Typer) -> None:
    app.add_typer(acme_app, name="acme")
"""


@pytest.fixture
def acme_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A new service, installed as a distribution of its own: its folder and one entry point
    (what `pip install` writes), nothing else."""
    package = tmp_path / "acme_llmops"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "__main__.py").write_text("")
    (package / "plugin.py").write_text(ACME_PLUGIN)
    (package / "cli.py").write_text(ACME_CLI)
    (package / "demo.py").write_text("def run(ctx):\n    ctx.say('acme stage')\n")
    dist = tmp_path / "acme_llmops-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-llmops\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[llmops.services]\nacme = acme_llmops.plugin:PLUGIN\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    discover.cache_clear()
    yield
    discover.cache_clear()


@pytest.mark.usefixtures("acme_installed")
def test_adding_a_service_is_one_folder_and_one_entry_point() -> None:
    """`up`, `status`, the CLI, `demo` and the production ACLs pick it up; shared/ unchanged."""
    from typer.testing import CliRunner

    from shared.cli.demo import _stages
    from shared.cli.main import build_app
    from shared.deploy.kafka import render_init_script

    names = [p.name for p in discover()]
    assert names.index("serving") < names.index("acme") < names.index("monitoring")  # by order
    assert [s.label for s in processes({"acme"})] == ["acme"]  # what `llmops up` starts
    assert processes({"acme"})[0].module == "acme_llmops"
    result = CliRunner().invoke(build_app(), ["acme", "hello"])
    assert result.exit_code == 0, result.output
    assert "hello from acme" in result.output
    assert "acme" in [name for name, _stage in _stages()]
    init = render_init_script(discover())
    assert 'user acme "${' in init
    assert "acl acme topic literal Describe,Write llmops.alert.raised.v1" in init
    assert "acl acme topic literal Describe,Read llmops.model.promoted.v1" in init


def _readme_processes() -> dict[str, tuple[set[str], set[str]]]:
    """README's process table, per service: the catalogue topics each row names."""
    catalogue = {t.value.removeprefix("llmops.").rsplit(".v", 1)[0] for t in Topic}
    text = (ROOT / "README.md").read_text()
    section = text[text.index("| process | consumes | produces | port |") :]
    table: dict[str, tuple[set[str], set[str]]] = {}
    for line in section.splitlines()[2:]:
        if not line.startswith("|"):
            break
        process, consumes, produces, _port = (c.strip() for c in line.strip("|").split("|"))

        def topics(cell: str) -> set[str]:
            named = set(re.findall(r"`([a-z.*-]+)`", cell))
            return {t for n in named for t in catalogue if fnmatch.fnmatch(t, n)}

        got = table.setdefault(process.split()[0], (set(), set()))
        got[0].update(topics(consumes))
        got[1].update(topics(produces))
    return table


def test_readme_process_table_matches_the_plugins() -> None:
    """The README's 'What runs' table says what each plug-in declares (ports included)."""
    table = _readme_processes()
    text = (ROOT / "README.md").read_text()
    assert set(table) == {p.name for p in discover()}
    for plugin in discover():
        consumes, produces = table[plugin.name]
        short = {t: t.value.removeprefix("llmops.").rsplit(".v", 1)[0] for t in Topic}
        assert consumes == {short[t] for t in plugin.consumes}, plugin.name
        assert produces == {short[t] for t in plugin.produces}, plugin.name
        for spec in plugin.processes:
            assert re.search(rf"\| {spec.port}\b", text), f"{spec.label}: port {spec.port}"
