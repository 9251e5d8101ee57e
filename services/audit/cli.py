"""`llmops audit list | verify`: read the audit trail (admin key)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import httpx
import typer
from rich.table import Table

from services.audit.config import AuditSettings
from services.audit.plugin import PLUGIN
from shared.cli.common import EXIT_INVALID, EXIT_UNAVAILABLE, api_key, console, out, stdout_line

audit_app = typer.Typer(help="The append-only audit trail (admin only).", no_args_is_help=True)
UrlOpt = Annotated[str | None, typer.Option(help="Base URL of the audit service.")]


def _get(path: str, url: str | None, params: dict[str, Any] | None = None) -> dict[str, Any]:
    cfg = AuditSettings(service_name="cli", log_format="text")
    base = (url or f"http://127.0.0.1:{PLUGIN.processes[0].resolved_port}").rstrip("/")
    try:
        response = httpx.get(
            f"{base}{path}",
            params={k: v for k, v in (params or {}).items() if v is not None},
            headers={"X-API-Key": api_key(cfg) or ""},
            timeout=30,
        )
    except httpx.HTTPError as exc:
        console.print(f"[red]cannot reach the audit service at {base}:[/] {exc}")
        raise typer.Exit(EXIT_UNAVAILABLE) from None
    if response.status_code != 200:
        console.print(f"[red]{response.status_code}:[/] {response.text}")
        raise typer.Exit(EXIT_INVALID)
    return response.json()  # type: ignore[no-any-return]


@audit_app.command("list")
def list_entries(
    action: Annotated[str | None, typer.Option(help="Action prefix, e.g. erasure.")] = None,
    actor: Annotated[str | None, typer.Option(help="Exact actor.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="Newest N entries.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    url: UrlOpt = None,
) -> None:
    """Newest audited actions first."""
    entries = _get("/v1/audit", url, {"action": action, "actor": actor, "limit": limit})["entries"]
    if as_json:
        for entry in entries:
            stdout_line(json.dumps(entry))
        return
    table = Table("seq", "when", "action", "actor", "allowed", "target", "producer")
    for e in entries:
        table.add_row(
            str(e["seq"]),
            e["occurred_at"][:19],
            e["action"],
            e["actor"],
            "yes" if e["allowed"] else "[red]no[/]",
            e["target"][:40],
            e["producer"],
        )
    out.print(table)


@audit_app.command()
def verify(as_json: Annotated[bool, typer.Option("--json")] = False, url: UrlOpt = None) -> None:
    """Recompute the hash chain; exit 1 and name the first bad entry if it was tampered with."""
    result = _get("/v1/audit/verify", url)
    if as_json:
        stdout_line(json.dumps(result))
    elif result["ok"]:
        out.print(f"audit trail intact: {result['entries']} entries, head {result['head'][:16]}…")
    else:
        out.print(f"[red]audit trail BROKEN at entry {result['first_bad']}:[/] {result['reason']}")
    if not result["ok"]:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.add_typer(audit_app, name="audit")
