"""Commands signed with a user's own key, end to end on the real embedded broker (issue #13).

`llmops keys create` (the CLI, against the gateway's key admin API) makes an operator key and
a user key, each with a signing key in a 0600 credential file. `llmops ingest` run with the
operator's credential (``LLMOPS_CREDENTIALS``) is ingested by the ingestion service (a real
process, checking commands in its bus against its view of the key registry); the same
command from the user key (role too low) and from the operator's key once revoked go to the
DLQ with reason ``unauthorized``, audited, and are not ingested. Each command is published
right after the key change it depends on: the service's view catches up before it checks.
"""

from __future__ import annotations

import asyncio
import json
import re
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from typer.testing import CliRunner

from services.serving.gateway.app import build as build_gateway
from services.serving.gateway.config import GatewaySettings
from shared.authority import read_credential, service_principal
from shared.bus import resolve_dlq_value
from shared.cli.main import app as llmops
from shared.events import AuditRecorded, decode
from shared.settings import ServiceSettings
from shared.stack.supervisor import provision_authority
from shared.storage.artifacts import ArtifactStore
from shared.topics import Topic
from tests.support.stack import (
    ServiceProcess,
    authority_env,
    free_port,
    read_topic,
    until,
    wait_until,
)

pytestmark = pytest.mark.integration
SECRET = "user-keys-integration-admin-secret"


@pytest.fixture(scope="module")
def kafka(private_kafka: str) -> str:
    return private_kafka


@pytest.fixture
def ingestion(kafka: str, data_dir: Path) -> Iterator[ServiceProcess]:
    env = {
        "LLMOPS_KAFKA_BOOTSTRAP": kafka,
        "LLMOPS_DATA_DIR": str(data_dir),
        "LLMOPS_LOG_LEVEL": "WARNING",
        **authority_env(data_dir, SECRET, "ingestion"),
        "LLMOPS_INGESTION_CONSUMER_GROUP": f"ingestion-{uuid.uuid4().hex[:8]}",
    }
    service = ServiceProcess("services.ingestion", env, data_dir / "ingestion.log")
    yield service.start(timeout=180)
    service.stop()


def _records_of(kafka: str, topic: str, predicate: Any, *, at_least: int = 1) -> list[Any]:
    def fetch() -> list[Any]:
        records = asyncio.run(read_topic(kafka, topic, count=10**6, timeout=2))
        found = [r for r in records if predicate(r)]
        return found if len(found) >= at_least else []

    return wait_until(fetch, timeout=120, interval=0.5)  # type: ignore[no-any-return]


async def test_a_user_key_signs_what_its_role_allows_and_nothing_once_revoked(
    kafka: str, data_dir: Path, ingestion: ServiceProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = data_dir.parent / "config"
    env = {
        "LLMOPS_ADMIN_KEY": SECRET,
        "LLMOPS_KAFKA_BOOTSTRAP": kafka,
        "LLMOPS_DATA_DIR": str(data_dir),
        "LLMOPS_CONFIG_DIR": str(config),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    signing = provision_authority(ServiceSettings(data_dir=data_dir, admin_key=SECRET))
    _runtime, gateway = build_gateway(
        GatewaySettings(
            kafka_bootstrap=kafka,
            data_dir=data_dir,
            admin_key=SECRET,
            require_authority=True,
            authority_principal=service_principal("serving"),
            authority_key=signing["serving"],
        )
    )
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = uvicorn.Server(
        uvicorn.Config(gateway, host="127.0.0.1", port=port, log_level="warning")
    )
    serving = asyncio.create_task(server.serve())
    inbox = data_dir / "inbox"
    inbox.mkdir(exist_ok=True)
    (inbox / "notes.txt").write_text("a note the operator may ingest\n")

    async def cli(*args: str, credentials: Path | None = None) -> str:
        extra = {"LLMOPS_CREDENTIALS": str(credentials)} if credentials else {}
        result = await asyncio.to_thread(CliRunner().invoke, llmops, list(args), env=extra)
        assert result.exit_code == 0, result.output
        return result.output

    async def ingest(credentials: Path) -> str:
        output = await cli(
            "ingest", str(inbox / "notes.txt"), "--dataset", "user-keys", credentials=credentials
        )
        found = re.search(r"ingest request ([0-9a-f-]{36}) sent", output)
        assert found is not None, output
        return found.group(1)

    try:
        await until(lambda: server.started, timeout=60)
        await until(gateway.state.key_registry.loaded, timeout=60)
        made = {}
        for name, role in (("olga", "operator"), ("uma", "user")):
            output = await cli(
                "keys", "create", name, "--role", role, "--expires-in", "1d", "--url", url
            )
            made[name] = json.loads(output.strip().splitlines()[-1])
        olga, uma = Path(made["olga"]["credentials"]), Path(made["uma"]["credentials"])
        assert olga.parent == config / "credentials"
        assert stat.S_IMODE(olga.stat().st_mode) == 0o600
        assert read_credential(olga).principal == "user:olga"
        assert made["olga"]["expires_at"] is not None
        listed = [
            json.loads(line)
            for line in (await cli("keys", "list", "--url", url)).splitlines()
            if line.startswith("{")
        ]
        assert {k["name"]: k["expires_at"] for k in listed}["olga"] == made["olga"]["expires_at"]

        accepted = await ingest(olga)  # published at once: the service waits for the key
        refused = await ingest(uma)

        def completed(record: Any) -> bool:
            return json.loads(record.value).get("request_id") in {accepted, refused}

        [done] = await asyncio.to_thread(
            _records_of, kafka, Topic.INGEST_COMPLETED.value, completed
        )
        assert json.loads(done.value)["request_id"] == accepted

        await cli("keys", "revoke", made["olga"]["key_id"], "--url", url)
        after_revocation = await ingest(olga)  # at once: the service catches up first

        transit = ArtifactStore(ServiceSettings(data_dir=data_dir).transit_root)

        def original(record: Any) -> dict[str, Any]:
            headers = {k: v.decode() for k, v in record.headers}
            return json.loads(resolve_dlq_value(record.value, headers, transit))  # type: ignore[no-any-return]

        wanted = {refused, after_revocation}
        dead = await asyncio.to_thread(
            lambda: _records_of(
                kafka,
                Topic.INGEST_REQUESTED.dlq,
                lambda r: original(r).get("event_id") in wanted,
                at_least=2,
            )
        )
        why = {original(r)["event_id"]: {k: v.decode() for k, v in r.headers} for r in dead}
        assert {h["x-llmops-dlq-reason"] for h in why.values()} == {"unauthorized"}
        assert (
            why[refused]["x-llmops-dlq-error"]
            == "user:uma (role user) may not issue llmops.ingest.requested"
        )
        assert why[after_revocation]["x-llmops-dlq-error"].endswith("is revoked")

        offsets = {h["x-llmops-dlq-offset"] for h in why.values()}

        def rejected(record: Any) -> bool:
            event = decode(record.value)
            return (
                isinstance(event, AuditRecorded)
                and not event.allowed
                and event.details.get("consumer") == "ingestion"
                and str(event.details.get("offset")) in offsets
            )

        audits = await asyncio.to_thread(
            _records_of, kafka, Topic.AUDIT_RECORDED.value, rejected, at_least=2
        )
        assert {decode(r.value).actor for r in audits} == {"user:uma", "user:olga"}  # type: ignore[attr-defined]
        completed_again = await asyncio.to_thread(
            lambda: asyncio.run(
                read_topic(kafka, Topic.INGEST_COMPLETED.value, count=10**6, timeout=2)
            )
        )
        assert not [r for r in completed_again if json.loads(r.value).get("request_id") in wanted]
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, timeout=30)
