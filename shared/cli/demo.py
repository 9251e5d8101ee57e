"""`llmops demo`: the platform's main job, end to end as far as the stages exist.

Each service plug-in may name a stage (``demo="services.<name>.demo:run"``), a function
``run(ctx: DemoContext) -> None``; stages run in the plug-ins' loop order and share results
through ``ctx.results``.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer

from shared.cli.common import console, settings
from shared.client import PlatformClient
from shared.events import AuditRecorded
from shared.plugins import discover
from shared.settings import ServiceSettings
from shared.stack.supervisor import pid_alive, read_state, stop_detached
from shared.topics import Topic


@dataclass
class DemoContext:
    settings: ServiceSettings
    work_dir: Path
    results: dict[str, Any] = field(default_factory=dict)

    def say(self, text: str) -> None:
        console.print(f"    {text}")

    @property
    def admin_key(self) -> str:
        key = self.settings.admin_secret()
        if not key:
            raise RuntimeError(
                f"no admin key: set LLMOPS_ADMIN_KEY or create {self.settings.admin_key_path}"
            )
        return key


def bus_roundtrip(ctx: DemoContext) -> None:
    """Stage 0: a typed event goes through the broker and comes back."""

    async def roundtrip() -> float:
        async with PlatformClient(ctx.settings, producer_name="demo") as client:
            started = time.perf_counter()
            sent = await client.publish(
                AuditRecorded(action="demo.start", actor="demo", allowed=True, target="bus")
            )
            await client.wait_for(Topic.AUDIT_RECORDED, lambda e: e.event_id == sent.event_id)
            return (time.perf_counter() - started) * 1000

    ctx.say(f"event round trip through Kafka: {asyncio.run(roundtrip()):.1f} ms")


def _stages() -> list[tuple[str, Any]]:
    return [(p.name, stage) for p in discover() if (stage := p.load_demo()) is not None]


def demo(
    keep: Annotated[bool, typer.Option(help="Leave the stack running afterwards.")] = False,
    fresh: Annotated[bool, typer.Option(help="Start from an empty data directory.")] = True,
    only: Annotated[
        str | None, typer.Option("--stages", help="Comma-separated stages (default: all).")
    ] = None,
) -> None:
    """Run every stage of the loop that exists, on the embedded defaults."""
    from shared.cli.stack import _up_detached

    chosen = _stages()
    if only:
        wanted = {name.strip() for name in only.split(",") if name.strip()}
        unknown = wanted - {name for name, _ in chosen}
        if unknown:
            console.print(f"[red]unknown stage(s):[/] {', '.join(sorted(unknown))}")
            raise typer.Exit(2)
        chosen = [(name, stage) for name, stage in chosen if name in wanted]
    cfg = settings()
    state = read_state(cfg)
    started_here = not (state and pid_alive(int(state["supervisor_pid"])))
    if started_here:
        if fresh and cfg.data_dir.exists():
            shutil.rmtree(cfg.data_dir)
        console.print("[bold]starting the stack[/]")
        _up_detached(cfg.data_dir, None, 900)
    ctx = DemoContext(settings=cfg, work_dir=(cfg.data_dir / "demo").resolve())
    ctx.work_dir.mkdir(parents=True, exist_ok=True)
    stages = [("bus", bus_roundtrip), *chosen]
    failed = False
    try:
        for index, (name, stage) in enumerate(stages, 1):
            console.print(f"[bold cyan]stage {index}/{len(stages)}: {name}[/]")
            started = time.perf_counter()
            stage(ctx)
            console.print(f"    [green]done[/] in {time.perf_counter() - started:.1f}s")
    except Exception as exc:
        failed = True
        why = str(exc) or "timed out waiting for the stage's result"
        console.print(f"[red]demo failed[/] in stage {name}: {type(exc).__name__}: {why}")
        console.print(f"logs: {cfg.data_dir / 'logs'}")
    finally:
        if started_here and not keep:
            stop_detached(cfg)
            console.print("stack stopped")
    if failed:
        raise typer.Exit(1)
    console.print("[bold green]demo complete[/]")


def register(app: typer.Typer) -> None:
    app.command()(demo)
