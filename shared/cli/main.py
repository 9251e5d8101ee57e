"""The `llmops` command: the stack, events, and one sub-command group per stage."""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="llmops",
    help="Run the whole life of an LLM: ingest, anonymize, label, train, evaluate, serve, monitor.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

# Each module has `register(app)`; stage modules join as their services land.
COMMAND_MODULES = (
    "shared.cli.stack",
    "shared.cli.events",
    "shared.cli.demo",
    "shared.cli.ingest",
    "shared.cli.privacy",
    "shared.cli.serving",
)

for _name in COMMAND_MODULES:
    try:
        _module = importlib.import_module(_name)
    except ModuleNotFoundError as exc:
        if exc.name != _name:
            raise
        continue
    _module.register(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
