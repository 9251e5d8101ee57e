"""The `llmops` command: the stack, events, and one sub-command group per stage."""

from __future__ import annotations

import typer

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
    return app


app = build_app()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
