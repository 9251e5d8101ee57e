"""`llmops models | promote | rollback | keys ...`: drive serving from the command line.

Promotions and rollbacks are events on Kafka (every worker applies them); models and keys
go through the gateway's HTTP API with an admin key (LLMOPS_ADMIN_KEY or <data_dir>/admin.key).
"""

from __future__ import annotations

import getpass
import json
import tarfile
import tempfile
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

from shared.cli.common import EXIT_INVALID, EXIT_UNAVAILABLE, console, run, settings, stdout_line
from shared.client import PlatformClient
from shared.events import ClaimCheck, Event, ModelPromoted, ModelRolledBack
from shared.modelkit import (
    MODEL_DIR_MEDIA_TYPE,
    MODEL_TAR_MEDIA_TYPE,
    dir_digest,
    is_model_dir,
)
from shared.storage import ArtifactStore

GatewayOpt = Annotated[
    str,
    typer.Option(envvar="LLMOPS_GATEWAY_URL", help="Gateway base URL."),
]
keys_app = typer.Typer(help="API keys of the gateway (admin only).", no_args_is_help=True)


def _admin_key() -> str:
    if key := settings().admin_secret():
        return key
    console.print("[red]no admin key:[/] set LLMOPS_ADMIN_KEY or start the stack (`llmops up`).")
    raise typer.Exit(EXIT_INVALID)


def _call(method: str, url: str, path: str, body: dict[str, Any] | None = None) -> Any:
    try:
        response = httpx.request(
            method,
            f"{url.rstrip('/')}{path}",
            json=body,
            timeout=30,
            headers={"Authorization": f"Bearer {_admin_key()}"},
        )
    except httpx.HTTPError as exc:
        console.print(f"[red]cannot reach the gateway at {url}:[/] {exc}")
        raise typer.Exit(EXIT_UNAVAILABLE) from None
    if response.status_code >= 400:
        try:
            message = response.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = response.text
        console.print(f"[red]{response.status_code}:[/] {message}")
        raise typer.Exit(EXIT_INVALID)
    return response.json()


def _publish(event: Event) -> None:
    async def send() -> Event:
        async with PlatformClient(settings(), producer_name="cli") as client:
            return await client.publish(event)

    sent = run(send())
    stdout_line(json.dumps({"event_id": str(sent.event_id), "event_type": sent.EVENT_TYPE}))


def model_artifact(path: Path, upload: bool) -> ClaimCheck:
    """A claim check for a model dir: the dir itself (shared disk) or a tarball in the store."""
    if not upload:
        digest, size = dir_digest(path)
        return ClaimCheck(uri=str(path), sha256=digest, size=size, media_type=MODEL_DIR_MEDIA_TYPE)
    with tempfile.TemporaryDirectory() as tmp:
        tarball = Path(tmp) / "model.tar"
        with tarfile.open(tarball, "w") as tar:
            for file in sorted(p for p in path.rglob("*") if p.is_file()):
                tar.add(file, arcname=str(file.relative_to(path)))
        return ArtifactStore(settings().artifact_root).put_file(tarball, MODEL_TAR_MEDIA_TYPE)


def models(url: GatewayOpt = "http://127.0.0.1:8000") -> None:
    """Models the live workers serve, with their versions."""
    for model in _call("GET", url, "/v1/models")["data"]:
        stdout_line(f"{model['id']}\t{','.join(model.get('versions', []))}")


def promote(  # noqa: PLR0917 (typer command: parameters are the CLI)
    model: Annotated[str, typer.Argument(help="Model name clients ask for.")],
    version: Annotated[str, typer.Argument(help="Version to serve.")],
    path: Annotated[Path | None, typer.Option(help="Hugging Face model directory.")] = None,
    canary: Annotated[
        float | None, typer.Option(min=0.0, max=1.0, help="Serve as challenger with this share.")
    ] = None,
    upload: Annotated[bool, typer.Option(help="Copy into the artifact store (tarball).")] = False,
    previous: Annotated[str | None, typer.Option(help="Version it replaces.")] = None,
) -> None:
    """Publish ModelPromoted: every worker loads the version, then switches live."""
    artifact = None
    if path is not None:
        path = path.resolve()
        if not is_model_dir(path):
            console.print(f"[red]{path} is not a model directory (config.json, tokenizer.json)[/]")
            raise typer.Exit(EXIT_INVALID)
        artifact = model_artifact(path, upload)
    _publish(
        ModelPromoted(
            model_name=model,
            model_version=version,
            artifact=artifact,
            alias="challenger" if canary is not None else "champion",
            traffic_share=1.0 if canary is None else canary,
            previous_version=previous,
            actor=getpass.getuser(),
        )
    )


def rollback(
    model: Annotated[str, typer.Argument(help="Model name.")],
    to: Annotated[str, typer.Option("--to", help="Version to serve again.")],
    from_: Annotated[str, typer.Option("--from", help="Version withdrawn.")] = "",
    reason: Annotated[str, typer.Option(help="Why.")] = "manual",
) -> None:
    """Publish ModelRolledBack: workers return to an earlier version."""
    _publish(
        ModelRolledBack(
            model_name=model,
            from_version=from_,
            to_version=to,
            reason=reason,
            actor=getpass.getuser(),
        )
    )


@keys_app.command("create")
def keys_create(
    role: Annotated[str, typer.Option(help="admin, engineer, annotator or viewer.")] = "engineer",
    name: Annotated[str, typer.Option(help="A label for the key.")] = "key",
    rpm: Annotated[int | None, typer.Option(help="Requests per minute.")] = None,
    tpm: Annotated[int | None, typer.Option(help="Tokens per minute.")] = None,
    url: GatewayOpt = "http://127.0.0.1:8000",
) -> None:
    """Create a key; the secret is printed once (only its hash is stored)."""
    body = {"role": role, "name": name, "rpm": rpm, "tpm": tpm}
    stdout_line(json.dumps(_call("POST", url, "/v1/keys", body)))


@keys_app.command("list")
def keys_list(url: GatewayOpt = "http://127.0.0.1:8000") -> None:
    """Keys (ids, roles, limits; never the secrets)."""
    for key in _call("GET", url, "/v1/keys")["data"]:
        stdout_line(json.dumps(key))


@keys_app.command("revoke")
def keys_revoke(key_id: str, url: GatewayOpt = "http://127.0.0.1:8000") -> None:
    """Revoke a key by id."""
    stdout_line(json.dumps(_call("DELETE", url, f"/v1/keys/{key_id}")))


def register(app: typer.Typer) -> None:
    app.command()(models)
    app.command()(promote)
    app.command()(rollback)
    app.add_typer(keys_app, name="keys")
