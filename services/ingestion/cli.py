"""`llmops ingest` (`llmops datasets` is labeling's: it owns dataset versions)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from shared.cli.common import EXIT_INVALID, console, out, run, settings, stdout_line
from shared.client import PlatformClient, event_to_json_line
from shared.events import DatasetVersioned, IngestCompleted, IngestRequested, RecordsIngested
from shared.events.ingest import FieldMapping, IngestProgressed, SourceSpec
from shared.topics import Topic

FORMATS = ("auto", "jsonl", "csv", "parquet", "text")


def _uri(path: str) -> str:
    return path if "://" in path else str(Path(path).expanduser().absolute())


def _parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """KEY=VALUE pairs; values are JSON when they parse (numbers, true, lists), else text."""
    overrides: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--clean {pair!r}: expected KEY=VALUE")
        try:
            parsed: Any = json.loads(value)
        except json.JSONDecodeError:
            parsed = value
        if key.startswith("dedup."):
            overrides.setdefault("dedup", {})[key.removeprefix("dedup.")] = parsed
        else:
            overrides[key] = parsed
    return overrides


async def _follow(client: PlatformClient, request_id: Any, every_s: float = 1.0) -> None:
    """Print progress lines (stderr, at most one per ``every_s``) while the request runs.

    From the progress topic; the record batches (large, some inline) only where the
    catalogue has no progress topic: decoding them costs the CLI CPU the service needs."""
    try:
        topics = [Topic.for_event(IngestProgressed)]
    except KeyError:
        topics = [Topic.RECORDS_INGESTED]
    loop = asyncio.get_running_loop()
    last = [0.0]

    async def watch(topic: Topic) -> None:
        async for event in client.stream(topic):
            if getattr(event, "request_id", None) != request_id or loop.time() - last[0] < every_s:
                continue
            last[0] = loop.time()
            if isinstance(event, IngestProgressed):
                console.print(f"  read {event.read:,} rows, emitted {event.emitted:,}")
            elif isinstance(event, RecordsIngested):
                console.print(f"  read {event.read_so_far:,} rows, batch {event.batch_index} sent")

    await asyncio.gather(*(watch(t) for t in topics))


def print_report(report: IngestCompleted) -> None:
    table = Table("", "count", title=f"ingest of {report.dataset}", show_header=False)
    for name in ("read", "emitted", "malformed", "exact_duplicates", "near_duplicates"):
        table.add_row(name.replace("_", " "), f"{getattr(report, name):,}")
    for name, count in sorted(report.filtered.items()):
        table.add_row(f"filtered: {name}", f"{count:,}")
    table.add_row("batches", str(report.batches))
    if report.dataset_version:
        table.add_row("dataset version", f"{report.dataset}@{report.dataset_version}")
    out.print(table)
    if report.errors:
        out.print(f"{report.error_count} problem(s) in the input:")
        for error in report.errors:
            where = f"{error.source}" + (f":{error.line}" if error.line else "")
            out.print(f"  {where}: {error.reason}")
        if report.error_count > len(report.errors):
            out.print(f"  ... and {report.error_count - len(report.errors)} more")
    filtered = sum(report.filtered.values())
    if filtered:
        out.print(f"{filtered} record(s) dropped by quality filters:")
        for item in report.filtered_records:
            where = f"{item.source}" + (f":{item.line}" if item.line else "")
            out.print(f"  {where}: {item.rule}")
        if filtered > len(report.filtered_records):
            out.print(f"  ... and {filtered - len(report.filtered_records)} more")
    if report.failed:
        out.print(f"[red]request failed:[/] {report.failed}")


def ingest(  # noqa: PLR0917 (typer maps parameters to options)
    paths: Annotated[list[str], typer.Argument(help="Files, directories, globs or fsspec URLs.")],
    dataset: Annotated[str, typer.Option("--dataset", "-d", help="Dataset name.")],
    wait: Annotated[bool, typer.Option(help="Follow progress and print the report.")] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            help="Have labeling cut a dataset version (of anonymized text; --wait waits for it).",
        ),
    ] = False,
    fmt: Annotated[str, typer.Option("--format", help="auto|jsonl|csv|parquet|text")] = "auto",
    text_mode: Annotated[str, typer.Option(help="For text: a document per line|file.")] = "line",
    text_field: Annotated[str, typer.Option(help="Field holding the text.")] = "text",
    id_field: Annotated[str | None, typer.Option(help="Field holding a source id.")] = None,
    meta: Annotated[list[str] | None, typer.Option(help="Field kept as metadata.")] = None,
    clean: Annotated[
        list[str] | None, typer.Option(help="Cleaning override KEY=VALUE (dedup.threshold=0.8).")
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the report.")] = 600.0,
) -> None:
    """Ask the ingestion service to read sources into a dataset.

    The service reads local files only under its allowed roots (default: the directory
    `llmops up` ran in) or <data_dir>/inbox/, and URLs only of allowed schemes (none by
    default): LLMOPS_INGESTION_ALLOWED_ROOTS / LLMOPS_INGESTION_ALLOWED_SCHEMES.
    """
    try:
        if fmt not in FORMATS or text_mode not in ("line", "file"):
            raise ValueError(f"--format must be one of {', '.join(FORMATS)}; --text-mode line|file")
        request = IngestRequested(
            dataset=dataset,
            sources=[
                SourceSpec(uri=_uri(p), format=fmt, text_mode=text_mode)  # type: ignore[arg-type]
                for p in paths
            ],
            mapping=FieldMapping(
                text_field=text_field, id_field=id_field, metadata_fields=meta or []
            ),
            cleaning=_parse_overrides(clean or []),
            cut_version=version,
        )
    except ValueError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(EXIT_INVALID) from None

    async def send() -> IngestCompleted | None:
        async with PlatformClient(settings()) as client:
            sent = await client.publish(request)
            console.print(f"ingest request {sent.event_id} sent for dataset {dataset!r}")
            if not wait:
                return None
            follower = asyncio.create_task(_follow(client, sent.event_id))
            try:
                return await client.wait_for(  # type: ignore[no-any-return]
                    Topic.INGEST_COMPLETED,
                    lambda e: e.request_id == sent.event_id,
                    timeout_s=timeout,
                )
            finally:
                follower.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await follower

    try:
        report = run(send())
    except TimeoutError:
        console.print(f"[red]no report within {timeout:.0f}s[/] (is the ingestion service up?)")
        raise typer.Exit(1) from None
    if report is None:
        stdout_line(json.dumps({"request_id": str(request.event_id)}))
        return
    if json_output:
        stdout_line(event_to_json_line(report))
    else:
        print_report(report)
    if report.failed:
        raise typer.Exit(1)
    if version:
        _print_version(request, timeout, json_output)


async def wait_for_version(
    client: PlatformClient, request: IngestRequested, timeout_s: float
) -> DatasetVersioned:
    """The version labeling cuts for ``request`` once its report and every anonymized record
    are in (``causation_id`` = the request)."""
    return await client.wait_for(  # type: ignore[no-any-return]
        Topic.DATASET_VERSIONED,
        lambda e: e.causation_id == request.event_id,
        timeout_s=timeout_s,
    )


def _print_version(request: IngestRequested, timeout: float, json_output: bool) -> None:
    async def fetch() -> DatasetVersioned:
        async with PlatformClient(settings()) as client:
            return await wait_for_version(client, request, timeout)

    if not json_output:
        console.print("waiting for the anonymized records to cut the version ...")
    try:
        versioned = run(fetch())
    except TimeoutError:
        console.print(
            f"[red]no dataset version within {timeout:.0f}s[/]: the labeling service cuts it "
            "from anonymized records (are anonymization and labeling up? see their DLQs)"
        )
        raise typer.Exit(1) from None
    if json_output:
        stdout_line(event_to_json_line(versioned))
    else:
        out.print(
            f"dataset version {versioned.dataset}@{versioned.version}: "
            f"{versioned.records:,} records (anonymized text)"
        )


# -- datasets --------------------------------------------------------------------------
def register(app: typer.Typer) -> None:
    # `llmops datasets` belongs to labeling, the curator that owns dataset versions.
    app.command()(ingest)
