"""`llmops label ...`: projects, annotator keys, cuts, import/export over the service's API."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

from services.labeling import datasets_cli
from services.labeling.config import LabelingSettings
from shared.cli.common import EXIT_INVALID, EXIT_UNAVAILABLE, console, out, stdout_line

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
    """One admin call to the labeling service; errors become clear messages and exit codes."""
    settings = LabelingSettings(log_format="text")
    key = settings.admin_secret()
    if not key:
        console.print("[red]no admin key[/]: set LLMOPS_ADMIN_KEY or start the stack (`llmops up`)")
        raise typer.Exit(EXIT_INVALID)
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


@project_app.command("create")
def create(
    file: Annotated[Path, typer.Argument(help="Project definition (YAML or JSON).")],
) -> None:
    """Create or update a project from FILE."""
    body = call("POST", "/api/projects", content=file.read_bytes()).json()
    verb = "created" if body["created"] else "updated"
    out.print(f"project {body['project']} {verb}: {body['tasks_added']} task(s) added")


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
