"""The `llmops` command: the stack, events, and one sub-command group per stage."""

from __future__ import annotations

import typer

from shared.cli import demo, events, stack
from shared.plugins import discover

app = typer.Typer(
    name="llmops",
    help="Run the whole life of an LLM: ingest, anonymize, label, train, evaluate, serve, monitor.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

for _module in (stack, events, demo):
    _module.register(app)


def _mount_services() -> None:
    """Each service's own commands, from its plug-in (``services/<svc>/cli.py``)."""
    for plugin in discover():
        if (register := plugin.load_cli()) is not None:
            register(app)


_mount_services()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
