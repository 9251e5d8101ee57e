"""`llmops up`, `down` and `status`."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from typing import Annotated, Any

import typer
from aiokafka.errors import KafkaError
from rich.table import Table

from shared.cli.common import EXIT_UNAVAILABLE, console, out, run, settings, stdout_line
from shared.plugins import PluginError
from shared.plugins import processes as plugin_processes
from shared.settings import ServiceSettings
from shared.stack.broker import BrokerNotFoundError
from shared.stack.drain import describe, wait_caught_up
from shared.stack.inspect import consumer_lag, process_health, reported_groups
from shared.stack.supervisor import (
    Supervisor,
    parse_scale,
    pid_alive,
    read_state,
    stop_detached,
)
from shared.topics import is_ephemeral


def up(
    only: Annotated[str | None, typer.Option(help="Comma-separated services to run.")] = None,
    detach: Annotated[bool, typer.Option(help="Return once every service is healthy.")] = False,
    timeout: Annotated[float, typer.Option(help="With --detach: seconds to wait.")] = 600,
    scale: Annotated[
        str | None,
        typer.Option(
            help="Processes per service, e.g. serving-worker=2,anonymization=2: replicas "
            "join the same consumer groups and share the partitions."
        ),
    ] = None,
) -> None:
    """Start the broker (unless LLMOPS_KAFKA_BOOTSTRAP is set), topics, and every service."""
    cfg = settings()
    state = read_state(cfg)
    if state and pid_alive(int(state["supervisor_pid"])):
        console.print(
            f"a stack is already running (pid {state['supervisor_pid']}); `llmops down` first"
        )
        raise typer.Exit(1)
    try:
        processes = plugin_processes(set(only.split(",")) if only else None)
        replicas = parse_scale(scale, processes)
    except (ValueError, PluginError) as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None
    if detach:
        _up_detached(cfg.data_dir, only, timeout, scale)
        return
    supervisor = Supervisor(cfg, processes, console=console, scale=replicas)
    try:
        code = supervisor.run()
    except BrokerNotFoundError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(EXIT_UNAVAILABLE) from None
    raise typer.Exit(code)


def _up_detached(
    data_dir: os.PathLike[str], only: str | None, timeout: float, scale: str | None = None
) -> None:
    cfg = settings()
    log_dir = cfg.data_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    args = [sys.executable, "-m", "shared.cli.main", "up"] + (["--only", only] if only else [])
    args += ["--scale", scale] if scale else []
    with (log_dir / "supervisor.log").open("ab") as log:
        proc = subprocess.Popen(
            args,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, "COLUMNS": "200"},
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = (log_dir / "supervisor.log").read_text(errors="replace").splitlines()[-25:]
            console.print("[red]the stack failed to start:[/]\n" + "\n".join(tail))
            raise typer.Exit(1)
        state = read_state(cfg)
        if state and state.get("ready") and state["supervisor_pid"] == proc.pid:
            for line in (log_dir / "supervisor.log").read_text(errors="replace").splitlines():
                if "admin API key" in line:
                    console.print(line)
            console.print(f"[bold green]llmops is up[/] (supervisor pid {proc.pid})")
            hops = state.get("ephemeral_bootstrap")
            if hops and hops != state.get("bootstrap"):
                console.print(
                    f"  Kafka at {state.get('bootstrap')}; serving hops in memory at {hops}"
                )
            for p in state["processes"]:
                console.print(f"  {p['label']:<16} http://127.0.0.1:{p['port']}")
            console.print(f"  logs             {log_dir}\nstop it with `llmops down`")
            return
        time.sleep(0.3)
    console.print("[red]timed out waiting for the stack; stopping it[/]")
    stop_detached(cfg)
    raise typer.Exit(1)


def down(
    force: Annotated[
        bool, typer.Option("--force", help="Stop even if consumer groups still lag.")
    ] = False,
    wait: Annotated[
        float, typer.Option(help="Seconds to wait for consumer groups to catch up.")
    ] = 30,
) -> None:
    """Stop a stack started with `up --detach`; no process is left behind.

    First waits (up to --wait seconds) until every running service's consumer group has
    consumed what was published to it; refuses, naming the lagging groups, unless --force.
    """
    cfg = settings()
    state = read_state(cfg)
    if state and pid_alive(int(state["supervisor_pid"])):
        _say_where_the_log_lives(state)
        lagging = _drain(cfg, wait)
        if lagging and not force:
            console.print(
                f"[red]refusing to stop:[/] consumer groups still lag after {wait:.0f}s: "
                f"{describe(lagging)}\nwait longer (`--wait`), look at `llmops status`, or stop "
                "anyway with `llmops down --force`"
            )
            raise typer.Exit(1)
        if lagging:
            durable = (state.get("embedded_log") or {}).get("durable", True)
            fate = (
                "they stay in the log and are consumed after `llmops up`"
                if durable
                else "[bold]they are lost[/]: the log is in memory"
            )
            console.print(f"[yellow]stopping with lag (--force):[/] {describe(lagging)}; {fate}")
    if stop_detached(cfg):
        console.print("stack stopped")
    else:
        console.print("no stack is running")


def _say_where_the_log_lives(state: dict[str, Any]) -> None:
    log = state.get("embedded_log")
    if log is None:
        return  # an external Kafka cluster keeps its own log
    if log.get("durable"):
        console.print(f"event log kept in {log['path']}: `llmops up` resumes from it")
        if serving := log.get("serving_broker"):
            console.print(
                f"serving hops ({', '.join(SERVING_HOPS)}) in memory on "
                f"{serving['bootstrap']} by design: not kept across `down`; a request in "
                "flight ends with its HTTP caller, and inference results are on the log"
            )
    else:
        console.print(
            "[bold yellow]the embedded event log is in memory and NOT durable[/] "
            f"({log.get('reason')}): stopping forgets every event in it"
        )


SERVING_HOPS = ("inference.requested", "inference replies", "cancels", "worker.heartbeat")


def _drain(cfg: ServiceSettings, wait: float) -> dict[str, int]:
    # the running services' own groups, on the durable log: the serving hops are in memory
    # by design (waiting for them keeps nothing: their requests' callers are gone with `down`)
    groups = {
        group: kept
        for group, topics in reported_groups(process_health(cfg)).items()
        if (kept := [t for t in topics if not is_ephemeral(t)]) or not topics
    }

    def progress(lagging: dict[str, int], left: float) -> None:
        console.print(
            f"waiting for {len(lagging)} consumer group(s) to catch up ({left:.0f}s left): "
            f"{describe(lagging)}"
        )

    try:
        return asyncio.run(wait_caught_up(cfg.bootstrap_servers, groups, wait, progress))
    except KafkaError as exc:
        console.print(f"[yellow]cannot read consumer lag ({exc}); not waiting for it[/]")
        return {}


def status(json_output: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Each service's health and its consumer groups' lag."""
    cfg = settings()
    rows = process_health(cfg)
    try:
        lag = run(
            consumer_lag(
                cfg.bootstrap_servers, reported_groups(rows), cfg.ephemeral_bootstrap_servers
            )
        )
    except typer.Exit:
        lag = {}
    log = (read_state(cfg) or {}).get("embedded_log")
    if json_output:
        report = {
            "bootstrap": cfg.bootstrap_servers,
            "ephemeral_bootstrap": cfg.ephemeral_bootstrap_servers,
            "processes": rows,
            "lag": lag,
        }
        stdout_line(json.dumps({**report, "embedded_log": log}))
    else:
        table = Table("process", "status", "url", "pid", "restarts", "consumer lag")
        for row in rows:
            own = set(reported_groups([row]))
            group_lag = {
                topic: n
                for group, topics in lag.items()
                if group in own or group == row["service"] or group.startswith(row["service"] + ".")
                for topic, n in topics.items()
            }
            table.add_row(
                row["label"],
                row["status"],
                row["url"],
                str(row.get("pid") or "-"),
                str(row.get("restarts", "-")),
                ", ".join(f"{t.removeprefix('llmops.')}={n}" for t, n in group_lag.items()) or "0",
            )
        out.print(table)
        if log is not None:
            _say_where_the_log_lives({"embedded_log": log})
    if not rows or any(r["status"] != "healthy" for r in rows):
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command()(up)
    app.command()(down)
    app.command()(status)
