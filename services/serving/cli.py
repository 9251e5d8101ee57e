"""`llmops keys ...`: the gateway's API keys from the command line (admin key).

Promotion and rollback belong to the model registry (`llmops models ...`, the evaluation
service); `model_artifact` stays here for tools that package a model directory.
"""

from __future__ import annotations

import json
import re
import tarfile
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

from shared.authority import Credential, new_signing_key, write_credential
from shared.cli.common import (
    EXIT_INVALID,
    EXIT_UNAVAILABLE,
    api_key,
    console,
    run,
    settings,
    stdout_line,
)
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


def _api_key() -> str:
    """The caller's key (``LLMOPS_CREDENTIALS``, else the admin key): the gateway says 403
    to a key whose role may not manage keys."""
    key = api_key(required=True)
    assert key is not None
    return key


def _call(method: str, url: str, path: str, body: dict[str, Any] | None = None) -> Any:
    try:
        response = httpx.request(
            method,
            f"{url.rstrip('/')}{path}",
            json=body,
            timeout=30,
            headers={"Authorization": f"Bearer {_api_key()}"},
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


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> int:
    """Seconds of ``30d``, ``12h``, ``90m``, ``45s``, ``2w`` or a plain number of seconds;
    ``never`` (or 0): no expiry."""
    value = text.strip().lower()
    if value in {"never", "0"}:
        return 0
    match = re.fullmatch(r"(\d+)\s*([smhdw]?)", value)
    if match is None or int(match.group(1)) <= 0:
        raise typer.BadParameter("a duration like 30d, 12h, 90m, 3600 (seconds) or never")
    return int(match.group(1)) * _UNITS[match.group(2) or "s"]


def _credential_path(name: str, key_id: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", name)[:60] or "key"
    return settings().config_dir / "credentials" / f"{safe}-{key_id}.json"


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
    expires_in: Annotated[
        str | None,
        typer.Option(
            "--expires-in",
            help="Lifetime: 30d, 12h, 90m, 3600 (seconds), or never. Default: the gateway's "
            "(LLMOPS_GATEWAY_KEY_DEFAULT_EXPIRES_IN_S, never unless set).",
            show_default=False,
        ),
    ] = None,
    credentials: Annotated[
        Path | None,
        typer.Option(
            "--credentials",
            help="Where to write the credential file (API key + signing key, mode 0600); "
            "default: <LLMOPS_CONFIG_DIR>/credentials/<NAME>-<key id>.json.",
            show_default=False,
        ),
    ] = None,
    public_key: Annotated[
        str | None,
        typer.Option(
            "--public-key",
            help="Register this Ed25519 public key (base64url) instead of making a key pair "
            "here: its holder keeps the private key; no credential file is written.",
            show_default=False,
        ),
    ] = None,
    signing: Annotated[
        bool,
        typer.Option(
            "--signing/--no-signing",
            help="Also make a signing key pair, so the key's holder signs commands on the "
            "bus as user:NAME (its private key goes to the credential file only).",
        ),
    ] = True,
    url: GatewayOpt = "http://127.0.0.1:8000",
) -> None:
    """Create a key; the secret is printed once (only its hash is stored, and published to
    the key registry every service checks). With a signing key (the default), the key pair
    is made here, its public key registered with the API key, and both secrets written to a
    credential file readable by you only: `LLMOPS_CREDENTIALS=<file>` makes the CLI sign
    commands with it."""
    lifetime = parse_duration(expires_in) if expires_in is not None else None
    private = None
    if public_key is None and signing:
        private, public_key = new_signing_key()
    body = {
        "role": role,
        "name": principal or name,
        "rpm": rpm,
        "tpm": tpm,
        "public_key": public_key,
        "expires_in_s": lifetime,
    }
    made = _call("POST", url, "/v1/keys", body)
    if private is not None:
        path = credentials or _credential_path(made["name"], made["key_id"])
        expires = made.get("expires_at")
        try:
            write_credential(
                path,
                Credential(
                    name=made["name"],
                    role=made["role"],
                    api_key=made["key"],
                    key_id=made["key_id"],
                    signing_key=private,
                    expires_at=datetime.fromisoformat(expires) if expires else None,
                    gateway_url=url,
                ),
            )
        except OSError as exc:
            console.print(
                f"[red]the key was created but its credential file {path} could not be "
                f"written ({exc}):[/] revoke it (`llmops keys revoke {made['key_id']}`) "
                "and create it again with --credentials"
            )
            stdout_line(json.dumps(made))
            raise typer.Exit(EXIT_INVALID) from None
        made["credentials"] = str(path)
        console.print(
            f"credential written to {path} (mode 0600); sign commands with it: "
            f"export LLMOPS_CREDENTIALS={path}"
        )
    stdout_line(json.dumps(made))


@keys_app.command("list")
def keys_list(url: GatewayOpt = "http://127.0.0.1:8000") -> None:
    """Keys (ids, roles, limits, expiry, revoked or expired; never the secrets)."""
    for key in _call("GET", url, "/v1/keys")["data"]:
        stdout_line(json.dumps(key))


@keys_app.command("revoke")
def keys_revoke(key_id: str, url: GatewayOpt = "http://127.0.0.1:8000") -> None:
    """Revoke a key by id (the root key's too): refused by every HTTP API from then on."""
    stdout_line(json.dumps(_call("DELETE", url, f"/v1/keys/{key_id}")))


def register(app: typer.Typer) -> None:
    app.add_typer(keys_app, name="keys")
