"""`llmops keys ...`: the gateway's API keys from the command line (admin key).

Promotion and rollback belong to the model registry (`llmops models ...`, the evaluation
service); `model_artifact` stays here for tools that package a model directory.
"""

from __future__ import annotations

import json
import tarfile
import tempfile
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

from shared.cli.common import EXIT_INVALID, EXIT_UNAVAILABLE, console, run, settings, stdout_line
from shared.client import PlatformClient
from shared.events import ClaimCheck, Event
from shared.modelkit import (
    MODEL_DIR_MEDIA_TYPE,
    MODEL_TAR_MEDIA_TYPE,
    dir_digest,
)
from shared.storage import ArtifactStore

GatewayOpt = Annotated[
    str,
    typer.Option(envvar="LLMOPS_GATEWAY_URL", help="Gateway base URL."),
]
keys_app = typer.Typer(
    help="The platform's API keys (admin only): one registry for every HTTP API, issued by "
    "the gateway (docs/security.md, Keys).",
    no_args_is_help=True,
)


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


@keys_app.command("create")
def keys_create(
    principal: Annotated[
        str | None,
        typer.Argument(metavar="NAME", help="Whom the key is for (its name).", show_default=False),
    ] = None,
    *,
    role: Annotated[
        str,
        typer.Option(
            help="viewer < user < annotator < operator < admin (engineer: older name of user)."
        ),
    ] = "user",
    name: Annotated[str, typer.Option(help="Same as the NAME argument.")] = "key",
    rpm: Annotated[int | None, typer.Option(help="Requests per minute.")] = None,
    tpm: Annotated[int | None, typer.Option(help="Tokens per minute.")] = None,
    url: GatewayOpt = "http://127.0.0.1:8000",
) -> None:
    """Create a key; the secret is printed once (only its hash is stored, and published to
    the key registry every service checks)."""
    body = {"role": role, "name": principal or name, "rpm": rpm, "tpm": tpm}
    stdout_line(json.dumps(_call("POST", url, "/v1/keys", body)))


@keys_app.command("list")
def keys_list(url: GatewayOpt = "http://127.0.0.1:8000") -> None:
    """Keys (ids, roles, limits; never the secrets)."""
    for key in _call("GET", url, "/v1/keys")["data"]:
        stdout_line(json.dumps(key))


@keys_app.command("revoke")
def keys_revoke(key_id: str, url: GatewayOpt = "http://127.0.0.1:8000") -> None:
    """Revoke a key by id (the root key's too): refused by every HTTP API from then on."""
    stdout_line(json.dumps(_call("DELETE", url, f"/v1/keys/{key_id}")))


def register(app: typer.Typer) -> None:
    app.add_typer(keys_app, name="keys")
