"""`llmops datasets list | show | diff`: the dataset versions this platform has cut.

Labeling owns dataset versions (DESIGN.md), so the commands live here; they read the
``DatasetVersioned`` topic and the manifests in the artifact store, never a database.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from shared.cli.common import EXIT_INVALID, console, out, run, settings, stdout_line
from shared.client import PlatformClient, event_to_json_line
from shared.datasets import DatasetManifest, diff, iter_lineage, load_manifest, parse_ref
from shared.events import DatasetVersioned
from shared.settings import ServiceSettings
from shared.storage import ArtifactStore
from shared.topics import Topic

datasets_app = typer.Typer(help="Dataset versions and their lineage.", no_args_is_help=True)


async def _versions(cfg: ServiceSettings) -> list[DatasetVersioned]:
    async with PlatformClient(cfg) as client:
        return [
            e
            async for e in client.stream(
                Topic.DATASET_VERSIONED, from_beginning=True, timeout_s=1.5
            )
        ]


def _store(cfg: ServiceSettings, manifest_uri: str) -> ArtifactStore:
    store = ArtifactStore(cfg.artifact_root)
    if "/sha256/" in manifest_uri and not Path(cfg.artifact_root).exists():
        return ArtifactStore(manifest_uri.rsplit("/sha256/", 1)[0])
    return store


def _resolve(cfg: ServiceSettings, ref: str) -> tuple[DatasetManifest, ArtifactStore]:
    name, version = parse_ref(ref)
    found = [v for v in run(_versions(cfg)) if v.dataset == name]
    if version:
        found = [v for v in found if v.version.startswith(version)]
    if not found:
        raise ValueError(f"no version {ref!r} (see `llmops datasets list`)")
    chosen = found[-1]
    store = _store(cfg, chosen.manifest.uri)
    return load_manifest(store, chosen.manifest), store


@datasets_app.command("list")
def list_versions(json_output: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Every dataset version, oldest first."""
    versions = run(_versions(settings()))
    if json_output:
        for event in versions:
            stdout_line(event_to_json_line(event))
        return
    table = Table("dataset", "version", "parent", "records", "labeled", "created")
    for column in table.columns[1:3]:
        column.no_wrap = True
    for v in versions:
        table.add_row(
            v.dataset,
            v.version,
            v.parent or "-",
            f"{v.records:,}",
            str(v.labeled),
            v.occurred_at.strftime("%Y-%m-%d %H:%M:%S"),
        )
    out.print(table)


@datasets_app.command()
def show(
    ref: Annotated[str, typer.Argument(help="NAME or NAME@VERSION (latest if no version).")],
    record: Annotated[str | None, typer.Option(help="Lineage of one record id.")] = None,
    limit: Annotated[int, typer.Option(help="Lineage rows to print.")] = 20,
    json_output: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """A version's manifest and the lineage of its records."""
    cfg = settings()
    try:
        manifest, store = _resolve(cfg, ref)
    except ValueError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(EXIT_INVALID) from None
    lineage = [
        e
        for e in iter_lineage(store, manifest)
        if record in (None, e["record_id"], e.get("source_id"))
    ]
    if json_output:
        body = json.loads(manifest.model_dump_json(by_alias=True))
        body["lineage"] = lineage[:limit] if record is None else lineage
        stdout_line(json.dumps(body))
        return
    out.print(f"[bold]{manifest.dataset}@{manifest.version}[/]  parent: {manifest.parent or '-'}")
    out.print(
        f"records: {manifest.record_count:,}  labeled: {manifest.labeled}  "
        f"sha256: {manifest.sha256}"
    )
    out.print(f"schema: {json.dumps(manifest.schema_)}")
    out.print(f"created by: {', '.join(manifest.created_by) or '-'}")
    if manifest.labeled:
        out.print(f"task: {manifest.task}  splits: {json.dumps(manifest.splits)}")
        agreement = manifest.details.get("agreement") or {}
        out.print(
            f"annotators: {', '.join(manifest.details.get('annotators', [])) or '-'}  "
            f"provenance: {json.dumps(manifest.details.get('provenance', {}))}  "
            f"kappa: {agreement.get('cohen_kappa')}  alpha: {agreement.get('krippendorff_alpha')}"
        )
    columns = list(lineage[0])[:6] if lineage else ["record_id"]
    table = Table(*columns)
    for column in table.columns:
        column.overflow = "fold"
    for entry in lineage[:limit]:
        table.add_row(*(_cell(entry.get(c)) for c in columns))
    out.print(table)
    if record is None and len(lineage) > limit:
        out.print(f"... {len(lineage) - limit} more (--limit, --record ID, --json)")


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, list) and all(isinstance(v, dict) for v in value):
        # dropped duplicates in ingestion's lineage: id prefix and status
        return ", ".join(f"{str(v.get('record_id'))[:12]} ({v.get('status')})" for v in value)
    return value if isinstance(value, str) else json.dumps(value)[:60]


@datasets_app.command("diff")
def diff_versions(
    old: Annotated[str, typer.Argument(help="NAME@A")],
    new: Annotated[str, typer.Argument(help="NAME@B")],
    json_output: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Records added and removed between two versions."""
    cfg = settings()
    try:
        (a, _), (b, _) = _resolve(cfg, old), _resolve(cfg, new)
    except ValueError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(EXIT_INVALID) from None
    changes = diff(a, b)
    if json_output:
        stdout_line(json.dumps({"old": a.version, "new": b.version, **changes}))
        return
    out.print(
        f"{a.dataset}@{a.version} -> {b.dataset}@{b.version}: "
        f"+{len(changes['added'])} -{len(changes['removed'])} records"
    )
    for rid in changes["added"][:20]:
        out.print(f"  + {rid}")
    for rid in changes["removed"][:20]:
        out.print(f"  - {rid}")


def register(app: typer.Typer) -> None:
    app.add_typer(datasets_app, name="datasets")
