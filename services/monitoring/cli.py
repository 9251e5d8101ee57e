"""`llmops trace CORRELATION_ID` and `llmops monitor status|alerts|drift|decisions|approve`."""

from __future__ import annotations

import json
import uuid
from typing import Annotated, Any

import httpx
import typer

from services.monitoring.config import MonitoringSettings
from shared.cli.common import (
    EXIT_INVALID,
    EXIT_UNAVAILABLE,
    NO_KEY_HINT,
    api_key,
    console,
    out,
    run,
    stdout_line,
    with_stack,
)

monitor = typer.Typer(help="Monitoring: windows, alerts, drift and retraining decisions.")
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]
UrlOpt = Annotated[str | None, typer.Option(help="Monitoring URL (default: local port 8200).")]


def _settings() -> MonitoringSettings:
    return with_stack(MonitoringSettings(service_name="cli", log_format="text"))


def _base(url: str | None) -> str:
    from services.monitoring.app import port

    cfg = _settings()
    return (url or f"http://{cfg.host}:{port(cfg)}").rstrip("/")


def _key_headers() -> dict[str, str]:
    """The CLI user's key (``LLMOPS_CREDENTIALS``, else the admin key) for monitoring's
    reads (role viewer or above)."""
    key = api_key(_settings())
    return {"X-API-Key": key} if key else {}


def _get(url: str | None, path: str) -> Any:
    base = _base(url)
    try:
        response = httpx.get(f"{base}{path}", headers=_key_headers(), timeout=10)
    except httpx.HTTPError as exc:
        console.print(f"[red]cannot reach monitoring at {base}:[/] {exc}")
        raise typer.Exit(EXIT_UNAVAILABLE) from None
    if response.status_code in (401, 403):
        console.print(
            f"[red]{response.status_code}:[/] {response.json().get('detail')} ({NO_KEY_HINT})"
        )
        raise typer.Exit(EXIT_INVALID)
    response.raise_for_status()
    return response.json()


def trace(
    correlation_id: Annotated[str, typer.Argument(help="Correlation id of a loop run.")],
    as_json: JsonOpt = False,
) -> None:
    """Print the chain of events of one loop run (every topic, causation order)."""
    from services.monitoring.trace import collect, tree

    try:
        wanted = uuid.UUID(correlation_id)
    except ValueError:
        console.print(f"[red]not a correlation id (UUID):[/] {correlation_id!r}")
        raise typer.Exit(EXIT_INVALID) from None
    cfg = _settings()
    rows = run(collect(cfg.bootstrap_servers, wanted, cfg.ephemeral_bootstrap_servers))
    if as_json:
        for row in rows:
            stdout_line(json.dumps(row))
        return
    if not rows:
        console.print(f"no events carry correlation id {wanted}")
        raise typer.Exit(1)
    for depth, row in tree(rows):
        out.print(
            f"{row['occurred_at'][11:23]}  {'  ' * depth}{row['event_type']:<28} "
            f"{row['producer']:<14} {row['event_id'][:8]}"
            + (f"  trace {row['trace_id'][:16]}" if row["trace_id"] else "")
        )
    console.print(f"{len(rows)} events")


@monitor.command()
def status(url: UrlOpt = None, as_json: JsonOpt = False) -> None:
    """Per model version: requests, latency, TTFT, tokens/s, error rate; workers; pipeline."""
    body = _get(url, "/api/status")
    if as_json:
        stdout_line(json.dumps(body))
        return
    for name, w in body["windows"].items():
        p95 = w["latency_p95_ms"]
        tps = w["tokens_per_s"]
        out.print(
            f"{name:<32} records={w['records']:<6} p95={p95 or 0:.0f}ms "
            f"tok/s={tps or 0:.1f} errors={w['error_rate']:.1%} windows={w['windows_evaluated']}"
        )
    for worker in body["workers"]:
        out.print(f"worker {worker['worker_id']}: {worker['status']} {worker['models']}")
    pipeline = body["pipeline"] or {}
    out.print(
        f"max consumer lag {pipeline.get('max_lag', '?')}, "
        f"dead letters {pipeline.get('dlq_total', '?')}"
    )


@monitor.command()
def alerts(url: UrlOpt = None, limit: int = 20, as_json: JsonOpt = False) -> None:
    """The latest alerts."""
    rows = _get(url, f"/api/alerts?limit={limit}")
    for row in rows:
        stdout_line(
            json.dumps(row)
            if as_json
            else f"{row['at'][:19]}  {row['severity']:<8} {row['name']:<14} {row['summary']}"
        )


@monitor.command()
def drift(url: UrlOpt = None, limit: int = 20, as_json: JsonOpt = False) -> None:
    """The latest drift comparisons (score vs threshold)."""
    rows = _get(url, f"/api/drift?limit={limit}")
    for r in rows:
        mark = "DRIFT" if r["drifted"] else "ok"
        stdout_line(
            json.dumps(r)
            if as_json
            else f"{r['at'][:19]}  {r['model_name']}@{r['model_version']:<12} "
            f"{r['feature']:<15} {r['method']:<14} {r['score']:.4f} "
            f"(threshold {r['threshold']}, p={r['p_value']})  {mark}"
        )


@monitor.command()
def decisions(url: UrlOpt = None, limit: int = 20, as_json: JsonOpt = False) -> None:
    """Retraining policy decisions: fired, suppressed by cool-down, waiting..."""
    rows = _get(url, f"/api/decisions?limit={limit}")
    for r in rows:
        stdout_line(
            json.dumps(r)
            if as_json
            else f"#{r['id']:<4} {r['at'][:19]}  {r['model_name']:<16} {r['trigger']:<9} "
            f"{r['outcome']:<22} {r['reason']}"
        )


@monitor.command()
def approve(decision_id: int, url: UrlOpt = None) -> None:
    """Approve a retraining that waits for approval (needs an admin key)."""
    key = api_key(_settings())
    base = _base(url)
    response = httpx.post(
        f"{base}/api/decisions/{decision_id}/approve", headers={"X-API-Key": key or ""}, timeout=10
    )
    if response.status_code >= 400:
        console.print(f"[red]{response.status_code}:[/] {response.json().get('detail')}")
        raise typer.Exit(1)
    stdout_line(json.dumps(response.json()))


def register(app: typer.Typer) -> None:
    app.command()(trace)
    app.add_typer(monitor, name="monitor")
