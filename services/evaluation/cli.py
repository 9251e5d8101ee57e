"""`llmops models list | show | report | register | approve | promote | rollback | live`.

The registry (this service) is the one owner of promotion: promote, approve and rollback are
admin-key HTTP requests to it, so each is checked (version known, state allows it), answered
at once, and turned into ModelPromoted / ModelRolledBack + AuditRecorded by the registry.
"""

from __future__ import annotations

import json
import tarfile
import tempfile
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

from shared.cli.common import (
    EXIT_INVALID,
    EXIT_UNAVAILABLE,
    NO_KEY_HINT,
    api_key,
    console,
    settings,
    stdout_line,
)
from shared.events import ClaimCheck
from shared.modelkit import (
    MODEL_DIR_MEDIA_TYPE,
    MODEL_TAR_MEDIA_TYPE,
    dir_digest,
    is_adapter_dir,
    is_model_dir,
)
from shared.settings import port_override
from shared.storage import ArtifactStore

models_app = typer.Typer(
    help="The model registry: versions, aliases, reports.", no_args_is_help=True
)


def _default_url() -> str:
    return f"http://127.0.0.1:{port_override('LLMOPS_EVALUATION_PORT') or 9105}"


UrlOpt = Annotated[
    str | None, typer.Option(envvar="LLMOPS_REGISTRY_URL", help="Registry (evaluation) URL.")
]


def _call(
    method: str,
    url: str | None,
    path: str,
    body: dict[str, Any] | None = None,
    *,
    admin: bool = False,
    raw: bool = False,
) -> Any:
    headers = {}
    # reads need a viewer key, changes an admin key: the caller's (LLMOPS_CREDENTIALS), else
    # the admin key; a key whose role is too low gets the registry's 403
    key = api_key(required=admin)
    if key:
        headers["Authorization"] = f"Bearer {key}"
    base = (url or _default_url()).rstrip("/")
    try:
        response = httpx.request(
            method, f"{base}/v1/registry{path}", json=body, timeout=30, headers=headers
        )
    except httpx.HTTPError as exc:
        console.print(f"[red]cannot reach the registry at {base}:[/] {exc}")
        raise typer.Exit(EXIT_UNAVAILABLE) from None
    if response.status_code >= 400:
        try:
            message = response.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = response.text
        console.print(f"[red]{response.status_code}:[/] {message}")
        raise typer.Exit(EXIT_INVALID)
    return response.text if raw else response.json()


@models_app.command("list")
def list_models(url: UrlOpt = None) -> None:
    """Registered models with their aliases (champion, challenger, staging)."""
    for model in _call("GET", url, "/models")["data"]:
        aliases = " ".join(f"{a}={v}" for a, v in sorted(model["aliases"].items()))
        stdout_line(f"{model['name']}\t{model['versions']} versions\t{aliases}")


@models_app.command("show")
def show(
    name: str, version: Annotated[str | None, typer.Argument()] = None, url: UrlOpt = None
) -> None:
    """A model (versions, aliases, history) or one version (status, scores, verdicts), JSON."""
    path = f"/models/{name}" + (f"/versions/{version}" if version else "")
    stdout_line(json.dumps(_call("GET", url, path), indent=2))


@models_app.command("report")
def report(
    name: str,
    version: str,
    fmt: Annotated[str, typer.Option("--format", help="json, html, card or url.")] = "url",
    url: UrlOpt = None,
) -> None:
    """The evaluation report of a version (its URL by default: a browser asks for an API key
    of role viewer or above) or its model card."""
    base = f"/models/{name}/versions/{version}"
    if fmt == "url":
        stdout_line(f"{(url or _default_url()).rstrip('/')}/v1/registry{base}/report.html")
        return
    paths = {"json": "/report", "html": "/report.html", "card": "/card.md"}
    if fmt not in paths:
        console.print(f"[red]unknown format {fmt!r}:[/] use json, html, card or url")
        raise typer.Exit(EXIT_INVALID)
    stdout_line(_call("GET", url, base + paths[fmt], raw=True))


def _artifact(path: Path, upload: bool) -> dict[str, Any]:
    """A claim check for a model dir: the dir itself (shared disk) or a tarball in the store."""
    if not upload:
        digest, size = dir_digest(path)
        claim = ClaimCheck(uri=str(path), sha256=digest, size=size, media_type=MODEL_DIR_MEDIA_TYPE)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            tarball = Path(tmp) / "model.tar"
            with tarfile.open(tarball, "w") as tar:
                for file in sorted(p for p in path.rglob("*") if p.is_file()):
                    tar.add(file, arcname=str(file.relative_to(path)))
            claim = ArtifactStore(settings().artifact_root).put_file(tarball, MODEL_TAR_MEDIA_TYPE)
    return json.loads(claim.model_dump_json())


@models_app.command("register")
def register_version(  # noqa: PLR0917 (typer command: parameters are the CLI)
    name: str,
    version: str,
    path: Annotated[
        Path, typer.Option(help="Hugging Face model directory, or a PEFT LoRA adapter directory.")
    ],
    upload: Annotated[bool, typer.Option(help="Copy into the artifact store (tarball).")] = False,
    dataset: Annotated[
        str | None,
        typer.Option(help="NAME@VERSION of a labeled dataset version: evaluate (and gate) on it."),
    ] = None,
    url: UrlOpt = None,
) -> None:
    """Register a model directory as a version (evaluated when --dataset is given). A LoRA
    adapter directory is served live on its base model's engine once promoted."""
    path = path.resolve()
    if not (is_model_dir(path) or is_adapter_dir(path)):
        console.print(
            f"[red]{path} is neither a model directory (config.json, tokenizer.json) "
            "nor a LoRA adapter (adapter_config.json, adapter_model.safetensors)[/]"
        )
        raise typer.Exit(EXIT_INVALID)
    if is_adapter_dir(path) and dataset:
        console.print("[red]--dataset: the evaluation runs full models only, not adapters[/]")
        raise typer.Exit(EXIT_INVALID)
    body: dict[str, Any] = {"version": version, "artifact": _artifact(path, upload)}
    if dataset:
        body["dataset"], _, body["dataset_version"] = dataset.partition("@")
        if not body["dataset_version"]:
            console.print("[red]--dataset needs NAME@VERSION[/]")
            raise typer.Exit(EXIT_INVALID)
    stdout_line(json.dumps(_call("POST", url, f"/models/{name}/versions", body, admin=True)))


@models_app.command("approve")
def approve(name: str, version: str, url: UrlOpt = None) -> None:
    """Approve a version held by `require_approval`: the registry promotes it."""
    stdout_line(
        json.dumps(_call("POST", url, f"/models/{name}/versions/{version}/approve", admin=True))
    )


@models_app.command("promote")
def promote(
    name: str,
    version: str,
    canary: Annotated[
        float | None, typer.Option(min=0.0, max=1.0, help="Challenger share of traffic.")
    ] = None,
    reason: Annotated[str, typer.Option(help="Why (audited).")] = "manual",
    url: UrlOpt = None,
) -> None:
    """Ask the registry to promote a registered version (champion, or a canary challenger)."""
    body = {"version": version, "canary": canary, "reason": reason}
    stdout_line(json.dumps(_call("POST", url, f"/models/{name}/promote", body, admin=True)))


@models_app.command("rollback")
def rollback(
    name: str,
    to: Annotated[str | None, typer.Option("--to", help="Version (default: previous).")] = None,
    reason: Annotated[str, typer.Option(help="Why (audited).")] = "manual",
    url: UrlOpt = None,
) -> None:
    """Ask the registry to return the champion to the previous one (ModelRolledBack)."""
    body = {"to": to, "reason": reason}
    stdout_line(json.dumps(_call("POST", url, f"/models/{name}/rollback", body, admin=True)))


@models_app.command("live")
def live(
    gateway: Annotated[
        str, typer.Option(envvar="LLMOPS_GATEWAY_URL", help="Gateway base URL.")
    ] = "http://127.0.0.1:8000",
) -> None:
    """Models the live serving workers answer with, from the gateway's /v1/models."""
    key = api_key() or ""
    try:
        response = httpx.get(
            f"{gateway.rstrip('/')}/v1/models",
            timeout=10,
            headers={"Authorization": f"Bearer {key}"},
        )
    except httpx.HTTPError as exc:
        console.print(f"[red]cannot reach the gateway at {gateway}:[/] {exc}")
        raise typer.Exit(EXIT_UNAVAILABLE) from None
    if response.status_code >= 400:  # the key refused (401/403) or a bad request: say so
        try:
            message = response.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = response.text
        hint = f" ({NO_KEY_HINT})" if response.status_code == 401 else ""
        console.print(f"[red]{response.status_code}:[/] {message}{hint}")
        raise typer.Exit(EXIT_INVALID if response.status_code < 500 else EXIT_UNAVAILABLE)
    for model in response.json()["data"]:
        stdout_line(f"{model['id']}\t{','.join(model.get('versions', []))}")


def register(app: typer.Typer) -> None:
    app.add_typer(models_app, name="models")
