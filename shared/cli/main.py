"""The `llmops` command: the stack, events, and one sub-command group per stage."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from typer.models import TyperInfo

from shared.cli import demo, events, stack
from shared.plugins import discover

CREDENTIALS_VARIABLE = "LLMOPS_CREDENTIALS"


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
    app.callback()(_options)
    for module in (stack, events, demo):
        module.register(app)
    for plugin in discover():
        if (register := plugin.load_cli()) is not None:
            register(app)
    _merge_groups(app)
    return app


def _options(
    ctx: typer.Context,
    credentials: Annotated[
        Path | None,
        typer.Option(
            "--credentials",
            envvar=CREDENTIALS_VARIABLE,
            help="Your credential file (from `llmops keys create`): commands are signed with "
            "its key and HTTP calls present its API key. Default: the admin key.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Options of every command (before the command: `llmops --credentials FILE ...`)."""
    if credentials is None:
        return
    # every settings object reads it, for this command only (an in-process caller's
    # environment is left as it was)
    before = os.environ.get(CREDENTIALS_VARIABLE)
    os.environ[CREDENTIALS_VARIABLE] = str(credentials)
    ctx.call_on_close(lambda: _restore(CREDENTIALS_VARIABLE, before))


def _restore(variable: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(variable, None)
    else:
        os.environ[variable] = value


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
