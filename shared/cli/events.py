"""`llmops publish`, `consume` and `topics`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from pydantic import ValidationError
from rich.table import Table

from shared.cli.common import EXIT_INVALID, console, out, run, settings, stdout_line
from shared.client import PlatformClient, event_to_json_line
from shared.events import Event
from shared.stack.inspect import topic_offsets
from shared.topics import DLQ_SUFFIX, Topic

if TYPE_CHECKING:
    from shared.storage.artifacts import ArtifactStore


def parse_payloads(text: str, source: str) -> list[dict[str, Any]]:
    """One JSON object, a JSON array of objects, or JSON lines."""
    stripped = text.strip()
    if not stripped:
        raise ValueError(f"{source}: empty input")
    try:
        data = json.loads(stripped)
        items = data if isinstance(data, list) else [data]
    except json.JSONDecodeError:
        items = []
        for number, line in enumerate(stripped.splitlines(), 1):
            if not line.strip():
                continue
            try:
                items.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{source} line {number}: not JSON ({exc.msg})") from None
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise ValueError(f"{source} item {index + 1}: expected a JSON object")
    return items


def validate_all(topic: Topic, items: list[dict[str, Any]]) -> tuple[list[Event], list[str]]:
    """Strict validation against the topic's model: every error, for every item."""
    events: list[Event] = []
    errors: list[str] = []
    for index, item in enumerate(items, 1):
        try:
            events.append(topic.event.model_validate(item))
        except ValidationError as exc:
            for err in exc.errors():
                loc = ".".join(str(p) for p in err["loc"]) or "<root>"
                errors.append(f"item {index}: {loc}: {err['msg']}")
    return events, errors


def publish(
    topic: Annotated[str, typer.Argument(help="Topic name or short alias (ingest.requested).")],
    file: Annotated[str, typer.Argument(help="JSON file, or - for standard input.")],
) -> None:
    """Validate JSON against the topic's event model, then publish it (acks=all)."""
    try:
        target = Topic.parse(topic)
        text = sys.stdin.read() if file == "-" else Path(file).read_text()
        items = parse_payloads(text, "stdin" if file == "-" else file)
    except (ValueError, OSError) as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(EXIT_INVALID) from None
    events, errors = validate_all(target, items)
    if errors:
        console.print(f"[red]invalid {target.event.__name__}; nothing was sent:[/]")
        for error in errors:
            console.print(f"  - {error}")
        raise typer.Exit(EXIT_INVALID)

    async def send() -> list[Event]:
        async with PlatformClient(settings()) as client:
            return [await client.publish(event, topic=target) for event in events]

    for event in run(send()):
        stdout_line(json.dumps({"topic": target.value, "event_id": str(event.event_id)}))


def consume(
    topic: Annotated[str, typer.Argument(help="Topic name, alias, or a .dlq topic.")],
    from_beginning: Annotated[bool, typer.Option("--from-beginning")] = False,
    max_events: Annotated[int | None, typer.Option("--max", help="Stop after N events.")] = None,
    timeout: Annotated[float | None, typer.Option(help="Stop after S seconds of silence.")] = None,
    resolve: Annotated[
        bool,
        typer.Option(
            "--resolve",
            help="DLQ of a raw hop: print the original bytes, read through the record's "
            "claim check from the transit store (gone once its lifecycle deleted them).",
        ),
    ] = False,
) -> None:
    """Print events of a topic, one JSON object per line (DLQ entries with their reason;
    a raw hop's DLQ entries hold a claim check to the transit store, not the raw text)."""
    is_dlq = topic.endswith(DLQ_SUFFIX)
    try:
        name = (
            Topic.parse(topic.removesuffix(DLQ_SUFFIX)).dlq if is_dlq else Topic.parse(topic).value
        )
    except ValueError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(EXIT_INVALID) from None

    async def read() -> None:
        seen = 0
        transit = None
        if resolve:
            from shared.storage.artifacts import ArtifactStore

            transit = ArtifactStore(settings().transit_root)
        async with PlatformClient(settings()) as client:
            stream = client.stream(
                name, from_beginning=from_beginning, timeout_s=timeout, raw=is_dlq
            )
            async for item in stream:
                if is_dlq:
                    stdout_line(json.dumps(dlq_line(item, transit)))
                else:
                    stdout_line(event_to_json_line(item))
                seen += 1
                if max_events is not None and seen >= max_events:
                    return

    run(read())


def dlq_line(item: Any, transit: ArtifactStore | None) -> dict[str, Any]:
    """One DLQ record as printed: headers, the value (a raw hop's: its claim check), and
    with ``transit`` the original bytes read through the claim (``original``, or
    ``original_error`` once the transit store no longer has them)."""
    from shared.bus.eventbus import DLQ_CLAIM_HEADER, resolve_dlq_value  # the CLI stays light

    headers = {k: v.decode("utf-8", "replace") for k, v in item.headers or ()}
    line: dict[str, Any] = {
        "offset": item.offset,
        "partition": item.partition,
        "headers": headers,
        "value": (item.value or b"").decode("utf-8", "backslashreplace"),
    }
    if transit is not None and headers.get(DLQ_CLAIM_HEADER) == "transit":
        try:
            original = resolve_dlq_value(item.value, headers, transit)
            line["original"] = original.decode("utf-8", "backslashreplace")
        except (OSError, ValueError, KeyError) as exc:
            line["original_error"] = f"{type(exc).__name__}: {exc}"[:500]
    return line


def topics(json_output: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Topics with their partitions and message counts."""
    cfg = settings()
    data = run(topic_offsets(cfg.bootstrap_servers, cfg.ephemeral_bootstrap_servers))
    if json_output:
        stdout_line(json.dumps(data))
        return
    table = Table("topic", "partitions", "messages")
    for name, info in data.items():
        table.add_row(name, str(info["partitions"]), str(info["messages"]))
    out.print(table)


def register(app: typer.Typer) -> None:
    app.command()(publish)
    app.command()(consume)
    app.command()(topics)
