"""`llmops label ...`: projects, annotator keys, cuts, import/export over the service's API."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from pydantic import ValidationError

from services.labeling import datasets_cli
from services.labeling.config import LabelingSettings
from services.labeling.schema import parse_spec
from shared.cli.common import (
    EXIT_INVALID,
    EXIT_UNAVAILABLE,
    api_key,
    console,
    out,
    run,
    stdout_line,
)
from shared.client import PlatformClient
from shared.events import LabelingProjectRequested

label_app = typer.Typer(help="Labeling: projects, annotators, dataset cuts.", no_args_is_help=True)
project_app = typer.Typer(help="Labeling projects.", no_args_is_help=True)
annotators_app = typer.Typer(
    help="Annotator keys valid in labeling only; for one key across the platform use "
    "`llmops keys create NAME --role annotator`.",
    no_args_is_help=True,
)
label_app.add_typer(project_app, name="project")
label_app.add_typer(annotators_app, name="annotators")


def call(method: str, path: str, **kwargs: Any) -> Any:
    """One call to the labeling service with the caller's key (``LLMOPS_CREDENTIALS``, else
    the admin key); errors become clear messages and exit codes."""
    settings = LabelingSettings(log_format="text")
    key = api_key(settings, required=True)
    url = settings.base_url() + path
    try:
        res = httpx.request(
            method, url, headers={"authorization": f"Bearer {key}"}, timeout=120, **kwargs
        )
    except httpx.HTTPError as exc:
        console.print(f"[red]cannot reach the labeling service at {settings.base_url()}:[/] {exc}")
        raise typer.Exit(EXIT_UNAVAILABLE) from None
    if res.status_code >= 400:
        try:
            detail = res.json().get("detail", res.text)
        except ValueError:
            detail = res.text
        console.print(f"[red]{res.status_code}[/]: {detail}")
        raise typer.Exit(EXIT_INVALID if res.status_code < 500 else 1)
    return res


async def publish_project(settings: LabelingSettings, spec: dict[str, Any]) -> str:
    """Publish a project command signed with the user's key; returns its command id."""
    async with PlatformClient(settings, producer_name="cli") as client:
        if client.signer is None:
            console.print(
                "[red]no admin key[/] to sign with: set LLMOPS_ADMIN_KEY or start the stack"
            )
            raise typer.Exit(EXIT_INVALID)
        sent = await client.publish(LabelingProjectRequested(project=str(spec["name"]), spec=spec))
    return str(sent.event_id)


def await_outcome(command_id: str, wait_s: float) -> dict[str, Any] | None:
    """The command's outcome from the labeling API once applied; None if it was not
    within ``wait_s`` (or the service cannot be reached)."""
    settings = LabelingSettings(log_format="text")
    key = api_key(settings)
    deadline = time.monotonic() + wait_s
    while True:
        try:
            res = httpx.get(
                f"{settings.base_url()}/api/project-commands/{command_id}",
                headers={"authorization": f"Bearer {key}"},
                timeout=10,
            )
            body = res.json() if res.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            body = None
        if body is not None and body.get("status") != "pending":
            return body  # type: ignore[no-any-return]
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.5)


@project_app.command("create")
def create(
    file: Annotated[Path, typer.Argument(help="Project definition (YAML or JSON).")],
    wait: Annotated[
        float, typer.Option(help="Seconds to wait for labeling to apply it (0: do not wait).")
    ] = 60.0,
) -> None:
    """Create or update a project from FILE: a command signed with your key, published on
    llmops.labeling-project.requested.v1 and applied by the labeling service."""
    try:
        spec = parse_spec(file.read_text()).model_dump(mode="json")
    except (ValidationError, ValueError) as exc:
        console.print(f"[red]invalid project definition[/]: {exc}")
        raise typer.Exit(EXIT_INVALID) from None
    command_id = run(publish_project(LabelingSettings(log_format="text"), spec))
    body = await_outcome(command_id, wait) if wait > 0 else None
    if body is None:
        out.print(
            f"project {spec['name']}: command {command_id} published; the labeling service "
            f"applies it when it reads it (`llmops label project status {command_id}`)"
        )
        return
    if body["status"] == "rejected":
        console.print(f"[red]project {spec['name']} rejected[/]: {body['error']}")
        raise typer.Exit(EXIT_INVALID)
    verb = "created" if body["created"] else "updated"
    out.print(f"project {body['project']} {verb}: {body['tasks_added']} task(s) added")


@project_app.command("status")
def command_status(
    command_id: Annotated[str, typer.Argument(help="Command id `project create` printed.")],
) -> None:
    """The outcome of a project command as JSON: pending, applied or rejected."""
    stdout_line(json.dumps(call("GET", f"/api/project-commands/{command_id}").json()))


@project_app.command("list")
def list_projects(json_output: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Projects with progress and agreement."""
    for p in call("GET", "/api/projects").json():
        if json_output:
            stdout_line(json.dumps(p))
            continue
        agreement = p["agreement"]
        out.print(
            f"{p['project']:20} {p['task']:14} final {p['status']['final']}/{p['tasks']} "
            f"conflicts {p['status']['conflict']}  kappa {agreement['cohen_kappa']}  "
            f"alpha {agreement['krippendorff_alpha']}"
        )


@label_app.command("stats")
def show_stats(project: Annotated[str, typer.Argument(help="Project name.")]) -> None:
    """Progress, agreement and per-annotator statistics as JSON."""
    stdout_line(json.dumps(call("GET", f"/api/projects/{project}").json(), indent=2))


@annotators_app.command("add")
def add_annotator(
    name: Annotated[str, typer.Argument(help="Annotator name.")],
    role: Annotated[str, typer.Option(help="annotator or admin.")] = "annotator",
) -> None:
    """Issue a key for NAME valid in labeling only (printed once; only its hash is stored).
    `llmops keys create NAME --role annotator` gives a key of the platform's one registry."""
    body = call("POST", "/api/annotators", json={"name": name, "role": role}).json()
    console.print(f"key for {body['name']} ({body['role']}); it is shown once:")
    stdout_line(body["key"])


@label_app.command("cut")
def cut(
    project: Annotated[str, typer.Option("--project", "-p", help="Project name.")],
    json_output: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Cut a labeled, split dataset version of PROJECT's final labels now."""
    body = call("POST", f"/api/projects/{project}/cut").json()
    if json_output:
        stdout_line(json.dumps(body))
    else:
        out.print(
            f"dataset version {body['dataset']}@{body['version']}: {body['records']} "
            f"labeled records (parent {body['parent'] or '-'})"
        )


@label_app.command("import")
def import_labels(
    file: Annotated[Path, typer.Argument(help="Labels: .jsonl, .csv or Label Studio .json")],
    project: Annotated[str, typer.Option("--project", "-p")],
    fmt: Annotated[str | None, typer.Option("--format", help="jsonl, csv or labelstudio.")] = None,
    annotator: Annotated[str, typer.Option(help="Annotator of rows naming none.")] = "import",
) -> None:
    """Import labels (as annotators' answers) into PROJECT."""
    kind = fmt or {".csv": "csv", ".json": "labelstudio"}.get(file.suffix, "jsonl")
    body = call(
        "POST",
        f"/api/projects/{project}/import",
        json={"format": kind, "content": file.read_text(), "annotator": annotator},
    ).json()
    out.print(
        f"imported {body['imported']}, duplicates {body['duplicates']}, "
        f"unmatched {body['unmatched']}, rejected {body['rejected']}"
    )
    for error in body["errors"]:
        console.print(f"  {error}")


@label_app.command("export")
def export_labels(
    project: Annotated[str, typer.Option("--project", "-p")],
    fmt: Annotated[str, typer.Option("--format", help="jsonl or csv.")] = "jsonl",
    output: Annotated[Path | None, typer.Option("--output", "-o")] = None,
) -> None:
    """Export every answer and final label of PROJECT."""
    text = call("GET", f"/api/projects/{project}/export", params={"format": fmt}).text
    if output:
        output.write_text(text)
        console.print(f"wrote {output}")
    else:
        typer.echo(text, nl=False)


def register(app: typer.Typer) -> None:
    app.add_typer(label_app, name="label")
    datasets_cli.register(app)
