"""`llmops erase`, `llmops deanonymize` and `llmops keys rotate-kek`: the privacy commands."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Annotated, Any

import httpx
import typer

from services.anonymization.config import AnonymizationSettings
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
from shared.events import ErasureCompleted
from shared.topics import Topic

EXIT_FAILED = 1


def _settings() -> AnonymizationSettings:
    return AnonymizationSettings(service_name="cli", log_format="text")


def _api_base(cfg: AnonymizationSettings, url: str | None) -> str:
    return (url or f"http://{cfg.api_host}:{cfg.api_port}").rstrip("/")


def _post(url: str, path: str, key: str, body: dict[str, Any]) -> httpx.Response:
    try:
        return httpx.post(f"{url}{path}", json=body, headers={"X-API-Key": key}, timeout=30)
    except httpx.HTTPError as exc:
        console.print(f"[red]cannot reach the anonymization API at {url}:[/] {exc}")
        raise typer.Exit(EXIT_UNAVAILABLE) from None


async def _await_answers(
    request: dict[str, Any], timeout_s: float, others_s: float
) -> dict[str, Any]:
    async with PlatformClient(_settings(), producer_name="cli") as client:
        answers = await collect_answers(
            client, uuid.UUID(request["request_id"]), timeout_s, others_s
        )
    return {**request, **aggregate(answers)}


async def collect_answers(
    client: PlatformClient, request_id: Any, timeout_s: float, others_s: float
) -> dict[str, ErasureCompleted]:
    """Answers to one request: anonymization's, then the others for ``others_s`` more."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    answers: dict[str, ErasureCompleted] = {}
    events = client.stream(Topic.ERASURE_COMPLETED, from_beginning=True).__aiter__()
    try:
        while (remaining := deadline - loop.time()) > 0:
            try:
                event = await asyncio.wait_for(events.__anext__(), timeout=remaining)
            except (TimeoutError, StopAsyncIteration):
                break
            if isinstance(event, ErasureCompleted) and event.request_id == request_id:
                answers[event.service] = event
                if event.service == "anonymization":
                    deadline = min(deadline, loop.time() + others_s)
    finally:
        await events.aclose()  # type: ignore[attr-defined]
    return answers


def aggregate(answers: dict[str, ErasureCompleted]) -> dict[str, Any]:
    """One report from every service's answer."""
    main = answers.get("anonymization")
    return {
        "answered": main is not None,
        "found": any(a.found for a in answers.values()),
        "records": main.records if main else [],
        "dataset_versions": main.dataset_versions if main else [],
        "model_versions": main.model_versions if main else [],
        "services": {
            name: {"found": a.found, "removed": a.removed} for name, a in sorted(answers.items())
        },
    }


def print_report(report: dict[str, Any]) -> None:
    out.print(f"erasure request {report['request_id']} (subject {report['subject_ref'][:12]}…)")
    if "answered" not in report:
        out.print("published; run with --wait to see the report")
        return
    if not report["answered"]:
        out.print("[red]no answer from the anonymization service in time[/]")
        return
    if not report["found"]:
        out.print("nothing held for this subject: no record, dataset version or model saw it")
        return
    out.print(f"records ({len(report['records'])}): {', '.join(report['records'][:20])}")
    out.print(f"dataset versions: {', '.join(report['dataset_versions']) or '-'}")
    out.print(f"model versions trained on them: {', '.join(report['model_versions']) or '-'}")
    for name, answer in report["services"].items():
        removed = ", ".join(f"{k}={v}" for k, v in answer["removed"].items()) or "nothing"
        out.print(f"  {name}: removed {removed}")
    out.print("the subject's key is destroyed: sealed copies anywhere are unreadable")


def erase(  # noqa: PLR0917
    subject: Annotated[str, typer.Option(help="The identifier: e-mail, name, phone, card...")],
    wait: Annotated[bool, typer.Option(help="Wait for the services' answers.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON report on stdout.")] = False,
    retrain: Annotated[
        bool,
        typer.Option(help="Retrain the models trained on the subject's records, without them."),
    ] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for anonymization.")] = 60.0,
    others: Annotated[float, typer.Option(help="Seconds to wait for the other services.")] = 3.0,
    key: Annotated[
        str | None,
        typer.Option(help="API key (default: LLMOPS_CREDENTIALS' key, else the admin key)."),
    ] = None,
    url: Annotated[str | None, typer.Option(help="Base URL of the anonymization API.")] = None,
) -> None:
    """Forget a data subject everywhere (crypto-shredding) and report what held it."""
    if not subject.strip():
        console.print("[red]--subject must not be empty[/]")
        raise typer.Exit(EXIT_INVALID)
    cfg = _settings()
    base = _api_base(cfg, url)
    # The service derives the subject reference: no CLI process holds the pseudonym key.
    response = _post(
        base,
        "/v1/erasures",
        key or api_key(cfg) or "",
        {"subject": subject, "retrain": retrain},
    )
    if response.status_code != 202:
        console.print(
            f"[red]{response.status_code}:[/] {response.json().get('error', response.text)}"
        )
        raise typer.Exit(EXIT_INVALID if response.status_code in (401, 403, 422) else EXIT_FAILED)
    report: dict[str, Any] = response.json()
    if wait:
        report = run(_await_answers(report, timeout, others))
    if as_json:
        stdout_line(json.dumps(report))
    else:
        print_report(report)
    if wait and not report.get("answered"):
        raise typer.Exit(EXIT_FAILED)


def deanonymize(
    record: Annotated[str, typer.Option(help="Record id, as in RecordsAnonymized.")],
    reason: Annotated[str, typer.Option(help="Why (kept in the audit trail).")] = "",
    key: Annotated[
        str | None,
        typer.Option(help="API key (default: LLMOPS_CREDENTIALS' key, else the admin key)."),
    ] = None,
    url: Annotated[str | None, typer.Option(help="Base URL of the anonymization API.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the JSON answer.")] = False,
) -> None:
    """Restore a record's original text (admin role only; audited; fails once erased)."""
    cfg = _settings()
    body = {"record_id": record, "reason": reason}
    response = _post(_api_base(cfg, url), "/v1/deanonymize", key or api_key(cfg) or "", body)
    body = response.json()
    if as_json:
        stdout_line(json.dumps({"status": response.status_code, **body}))
    elif response.status_code == 200:
        out.print(body["text"])
        for name, value in body.get("fields", {}).items():
            out.print(f"  {name}: {value}")
    else:
        console.print(f"[red]{response.status_code}:[/] {body.get('error')}")
    if response.status_code in (401, 403):  # no live key, or not an admin one
        raise typer.Exit(EXIT_INVALID)
    if response.status_code != 200:
        raise typer.Exit(EXIT_FAILED)


keys_app = typer.Typer(help="The vault's key-encryption key (admin only).", no_args_is_help=True)


@keys_app.command("rotate-kek")
def rotate_kek(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON report on stdout.")] = False,
) -> None:
    """Re-wrap the vault's subject keys with a new KEK and retire the old one.

    Pseudonyms and erasures are unchanged; the rotation is audited. Run it where the
    anonymization service's secrets and database are (its data dir and settings)."""
    from services.anonymization.adapters.keyfile import VaultKeks, kek_path, load_keyring
    from services.anonymization.adapters.store import rotate_kek as rotate
    from shared.storage.db import engine_for

    cfg = _settings()
    try:
        ring = load_keyring(cfg.pseudonym_key, cfg.data_dir, create=False)
    except (FileNotFoundError, ValueError) as exc:
        console.print(f"[red]no vault key:[/] {exc}")
        raise typer.Exit(EXIT_INVALID) from None
    url = cfg.database_url_for("anonymization")
    engine = engine_for(
        url, "anonymization", raw_url=cfg.database_url, module="services.anonymization"
    )
    try:
        report = rotate(engine, VaultKeks(ring, kek_path(cfg.data_dir)), actor="cli:admin")
    finally:
        engine.dispose()
    if as_json:
        stdout_line(json.dumps(report))
        return
    out.print(
        f"vault KEK rotated to {report['kek']}: {report['rewrapped']} subject keys re-wrapped; "
        f"retired {', '.join(report['previous'])}"
    )


def register(app: typer.Typer) -> None:
    app.command()(erase)
    app.command()(deanonymize)
    app.add_typer(keys_app, name="keys")  # merged with the gateway's `keys` (shared/cli/main)
