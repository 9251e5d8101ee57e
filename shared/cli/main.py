"""The `llmops` command: the stack, events, and one sub-command group per stage."""

from __future__ import annotations

import typer
from typer.models import TyperInfo

from shared.cli import demo, events, stack
from shared.plugins import discover


def build_app() -> typer.Typer:
    """The platform's commands, then each service's own, from its plug-in
    (``services/<svc>/cli.py``)."""
    app = typer.Typer(
        name="llmops",
        help="Run the whole life of an LLM: ingest, anonymize, label, train, evaluate, serve, "
        "monitor.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=False,
    )
    for module in (stack, events, demo):
        module.register(app)
    for plugin in discover():
        if (register := plugin.load_cli()) is not None:
            register(app)
    _merge_groups(app)
    return app


def _merge_groups(root: typer.Typer) -> None:
    """Plug-ins may add to one group (``keys``: the gateway's API keys, the vault's KEK):
    groups of the same name become one, with every plug-in's commands and their helps."""
    merged: dict[str, TyperInfo] = {}
    for info in list(root.registered_groups):
        first = merged.setdefault(str(info.name), info)
        if first is info or first.typer_instance is None or info.typer_instance is None:
            continue
        target, extra = first.typer_instance, info.typer_instance
        target.registered_commands.extend(extra.registered_commands)
        target.registered_groups.extend(extra.registered_groups)
        helps = [str(t.info.help) for t in (target, extra) if isinstance(t.info.help, str)]
        target.info.help = " ".join(dict.fromkeys(helps)) or None
        root.registered_groups.remove(info)


app = build_app()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
