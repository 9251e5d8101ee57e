"""`llmops train` (with a progress bar under --wait) and `llmops train policy set | show`."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from services.training.follow import follow_run
from shared.cli.common import EXIT_INVALID, console, out, run, settings, stdout_line
from shared.client import PlatformClient, event_to_json_line
from shared.datasets import parse_ref
from shared.events import ModelTrained, TrainingProgressed, TrainingRequested

train_app = typer.Typer(help="Train a model on a labeled dataset version.")
policy_app = typer.Typer(help="Training policies: how (and whether) new versions train.")
train_app.add_typer(policy_app, name="policy")


def _pairs(pairs: list[str]) -> dict[str, Any]:
    """KEY=VALUE pairs; values are JSON when they parse (numbers, true, lists), else text."""
    found: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"{pair!r}: expected KEY=VALUE")
        try:
            found[key] = json.loads(value)
        except json.JSONDecodeError:
            found[key] = value
    return found


def _request(fields: dict[str, Any]) -> TrainingRequested:
    try:
        space = fields.pop("space")
        fields["search_space"] = json.loads(space) if space else {}
        fields["hyperparameters"] = _pairs(fields.pop("params"))
        return TrainingRequested(**fields)
    except ValueError as exc:  # pydantic's ValidationError and JSON errors are ValueErrors
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(EXIT_INVALID) from None


def _bar() -> tuple[Progress, Any]:
    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} steps"),
        TextColumn("{task.fields[stats]}"),
        TimeRemainingColumn(),
        console=console,
    )
    return bar, bar.add_task("queued", total=None, stats="")


def _show(event: ModelTrained | TrainingProgressed, json_output: bool) -> None:
    if json_output:
        stdout_line(event_to_json_line(event))
    elif isinstance(event, ModelTrained):
        metrics = ", ".join(f"{k} {v:.4g}" for k, v in sorted(event.metrics.items()))
        out.print(f"model {event.model_name}@{event.model_version} (trial {event.trial})")
        out.print(f"  trained on {event.dataset}@{event.dataset_version}: {metrics}")
        out.print(f"  artifact {event.artifact.uri}")
        if event.loss_curve is not None:
            out.print(f"  loss curve {event.loss_curve.uri} (HTML)")
    else:
        out.print(f"[red]training failed:[/] {event.reason}")


@train_app.callback(invoke_without_command=True)
def train(  # noqa: PLR0917 (typer maps parameters to options)
    ctx: typer.Context,
    dataset: Annotated[str | None, typer.Option(help="NAME@VERSION (or NAME: latest).")] = None,
    base: Annotated[str, typer.Option(help="HF id, local path, or `tiny` (built-in).")] = "tiny",
    model: Annotated[str, typer.Option(help="Model name to register.")] = "llmops-tiny",
    lora: Annotated[bool, typer.Option(help="Train a LoRA adapter (merged for serving).")] = False,
    task: Annotated[str | None, typer.Option(help="sft or dpo (default from the data).")] = None,
    trials: Annotated[int, typer.Option(min=0, help="Optuna trials (0: one run).")] = 0,
    sampler: Annotated[str, typer.Option(help="tpe, random or grid.")] = "tpe",
    space: Annotated[str | None, typer.Option(help='JSON: {"learning_rate": {...}}')] = None,
    param: Annotated[
        list[str] | None, typer.Option(help="Hyperparameter KEY=VALUE (max_steps=100).")
    ] = None,
    wait: Annotated[bool, typer.Option(help="Show progress; wait for the model.")] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    timeout: Annotated[
        float, typer.Option(help="Under --wait: give up after this many seconds without progress.")
    ] = 900.0,
) -> None:
    """Ask the training service to train; exits non-zero if the run fails."""
    if ctx.invoked_subcommand is not None:
        return
    if not dataset:
        console.print("[red]error:[/] --dataset NAME@VERSION is required")
        raise typer.Exit(EXIT_INVALID)
    name, version = parse_ref(dataset)
    request = _request(
        {
            "model_name": model,
            "dataset": name,
            "dataset_version": version or "latest",
            "base_model": base,
            "lora": lora,
            "task": task,
            "search_trials": trials,
            "search_sampler": sampler,
            "space": space,
            "params": param or [],
        }
    )

    async def send() -> ModelTrained | TrainingProgressed | None:
        async with PlatformClient(settings()) as client:
            await client.publish(request)
            console.print(f"training run {request.event_id} requested")
            if not wait:
                return None
            bar, task_id = _bar()

            def advance(event: TrainingProgressed) -> None:
                label = f"trial {event.trial}" if event.trials and event.trials > 1 else "training"
                stats = " ".join(
                    f"{k} {v:.3g}"
                    for k, v in (("loss", event.loss), ("tok/s", event.tokens_per_s))
                    if v is not None
                )
                if event.total_steps:
                    bar.update(
                        task_id,
                        description=label,
                        total=event.total_steps,
                        completed=event.step,
                        stats=stats,
                    )
                elif event.status.startswith("trial_"):
                    bar.console.print(f"  trial {event.trial} {event.status[6:]}: {event.metrics}")

            with bar:
                return await follow_run(client, request.event_id, advance, timeout)

    try:
        result = run(send())
    except TimeoutError:
        console.print(f"[red]no progress for {timeout:.0f}s[/] (is the training service up?)")
        raise typer.Exit(1) from None
    if result is None:
        stdout_line(json.dumps({"run_id": str(request.event_id)}))
        return
    _show(result, json_output)
    if isinstance(result, TrainingProgressed):
        raise typer.Exit(1)


@policy_app.command("set")
def policy_set(  # noqa: PLR0917
    dataset: Annotated[str, typer.Argument(help="Dataset name.")],
    mode: Annotated[str, typer.Option(help="auto: train every new labeled version.")] = "auto",
    base: Annotated[str, typer.Option(help="Base model.")] = "tiny",
    model: Annotated[str, typer.Option(help="Model name.")] = "llmops-tiny",
    lora: Annotated[bool, typer.Option(help="LoRA.")] = False,
    task: Annotated[str | None, typer.Option(help="sft or dpo.")] = None,
    trials: Annotated[int, typer.Option(min=0, help="Optuna trials.")] = 0,
    sampler: Annotated[str, typer.Option(help="tpe, random or grid.")] = "tpe",
    space: Annotated[str | None, typer.Option(help="Search space JSON.")] = None,
    param: Annotated[list[str] | None, typer.Option(help="KEY=VALUE.")] = None,
) -> None:
    """Store the dataset's training policy in the training service."""
    if mode not in ("auto", "manual"):
        console.print("[red]error:[/] --mode must be auto or manual")
        raise typer.Exit(EXIT_INVALID)
    request = _request(
        {
            "model_name": model,
            "dataset": dataset,
            "dataset_version": "",
            "base_model": base,
            "lora": lora,
            "task": task,
            "search_trials": trials,
            "search_sampler": sampler,
            "space": space,
            "params": param or [],
            "set_policy": mode,
        }
    )

    async def send() -> None:
        async with PlatformClient(settings()) as client:
            await client.publish(request)

    run(send())
    stdout_line(json.dumps({"dataset": dataset, "mode": mode, "event_id": str(request.event_id)}))


def register(app: typer.Typer) -> None:
    app.add_typer(train_app, name="train")
