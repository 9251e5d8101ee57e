"""What every CLI command shares: settings, console, running coroutines, exit codes."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Coroutine
from typing import Any, TypeVar

import typer
from aiokafka.errors import KafkaConnectionError
from rich.console import Console

from shared.authority import CredentialError, api_key_for
from shared.settings import ServiceSettings

T = TypeVar("T")
S = TypeVar("S", bound=ServiceSettings)

console = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True, highlight=False)

EXIT_INVALID = 2
EXIT_UNAVAILABLE = 3


def settings() -> ServiceSettings:
    return with_stack(ServiceSettings(service_name="cli", log_format="text"))


def with_stack(cfg: S) -> S:
    """``cfg`` with the serving hops' broker of the running embedded stack, as `llmops up`
    recorded it in stack.json (its in-memory broker, or the one broker when the log fell
    back to memory); unchanged on a Kafka cluster or without a running stack."""
    if cfg.kafka_bootstrap:
        return cfg
    try:
        state = json.loads((cfg.data_dir / "stack.json").read_text())
    except (OSError, ValueError):
        return cfg
    hot = state.get("ephemeral_bootstrap") if isinstance(state, dict) else None
    if not isinstance(hot, str) or not hot:
        return cfg
    if hot == cfg.bootstrap_servers:  # one broker carries every topic
        return cfg.model_copy(update={"embedded_log": "memory"})
    return cfg.model_copy(update={"embedded_ephemeral_bootstrap": hot})


NO_KEY_HINT = (
    "set LLMOPS_CREDENTIALS (or --credentials) to your credential file from `llmops keys "
    "create`, or LLMOPS_ADMIN_KEY, or run where `llmops up` ran"
)


def api_key(cfg: ServiceSettings | None = None, *, required: bool = False) -> str | None:
    """The API key of the CLI's HTTP calls: the user's (``LLMOPS_CREDENTIALS`` or
    ``llmops --credentials``), else the admin key. The server decides what it may do: a
    viewer's key reads, and a command that needs more gets the server's 403. A credential
    file that cannot be used, or (``required``) no key at all, is a clear message, exit 2."""
    try:
        key = api_key_for(cfg or settings())
    except CredentialError as exc:
        console.print(f"[red]credential:[/] {exc}")
        raise typer.Exit(EXIT_INVALID) from None
    if required and not key:
        console.print(f"[red]no API key:[/] {NO_KEY_HINT}.")
        raise typer.Exit(EXIT_INVALID)
    return key


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine; a broker that cannot be reached, or a credential file that cannot
    be used, is a clear message, not a trace."""
    try:
        return asyncio.run(coro)
    except KafkaConnectionError as exc:
        console.print(
            f"[red]cannot reach Kafka at {_brokers(settings())}:[/] {exc}\n"
            "Start the stack with `llmops up --detach`, or set LLMOPS_KAFKA_BOOTSTRAP."
        )
        raise typer.Exit(EXIT_UNAVAILABLE) from None
    except CredentialError as exc:  # LLMOPS_CREDENTIALS names a file that cannot sign
        console.print(f"[red]credential:[/] {exc}")
        raise typer.Exit(EXIT_INVALID) from None


def _brokers(cfg: ServiceSettings) -> str:
    hot = cfg.ephemeral_bootstrap_servers
    main = cfg.bootstrap_servers
    return main if hot == main else f"{main} (serving hops: {hot})"


def stdout_line(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()
