"""Labeling project changes are signed commands, on the real embedded broker with the
labeling service as a process and command verification on (as `llmops up` runs it).

A client with plain Kafka access publishes project commands: unsigned, signed by a guessed
admin key, signed by a real service key that is not granted them (monitoring's), and a
genuine admin command edited after signing. Each lands in the DLQ with reason
``unauthorized`` and an audit record, and no project appears. The command the CLI's client
signs with the admin key is applied, and so are `llmops label project create`'s and one the
labeling API signs for its caller.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.authority import SERVICE_ROLE, Signer, derive_key, service_principal
from shared.client import PlatformClient
from shared.events import AuditRecorded, LabelingProjectRequested, decode
from shared.settings import ServiceSettings
from shared.topics import Topic
from tests.support.stack import ServiceProcess, authority_env, produce, read_topic, wait_until

pytestmark = pytest.mark.integration
SECRET = "llm-labeling-commands-admin-secret"
LLMOPS = str(Path(sys.executable).parent / "llmops")


@pytest.fixture(scope="module")
def kafka(private_kafka: str) -> str:
    return private_kafka


@pytest.fixture
def labeling(kafka: str, data_dir: Path) -> Iterator[ServiceProcess]:
    env = {
        "LLMOPS_KAFKA_BOOTSTRAP": kafka,
        "LLMOPS_DATA_DIR": str(data_dir),
        "LLMOPS_ADMIN_KEY": SECRET,  # the root API key, for the test's HTTP calls
        "LLMOPS_LOG_LEVEL": "WARNING",
        **authority_env(data_dir, SECRET, "labeling"),
        "LLMOPS_LABELING_CONSUMER_GROUP": f"labeling-{uuid.uuid4().hex[:8]}",
    }
    service = ServiceProcess("services.labeling", env, data_dir / "labeling.log")
    yield service.start(timeout=180)
    service.stop()


def _spec(name: str) -> dict[str, Any]:
    return {"name": name, "task": "classification", "labels": ["a", "b"], "datasets": ["d"]}


def _command(name: str) -> LabelingProjectRequested:
    return LabelingProjectRequested(project=name, spec=_spec(name))


def _of(kafka: str, topic: str, predicate: Any, *, at_least: int = 1) -> list[Any]:
    def fetch() -> list[Any]:
        records = asyncio.run(read_topic(kafka, topic, count=10**6, timeout=2))
        found = [r for r in records if predicate(r)]
        return found if len(found) >= at_least else []

    return wait_until(fetch, timeout=120, interval=0.5)  # type: ignore[no-any-return]


def test_only_signed_and_granted_project_commands_change_projects(
    kafka: str, data_dir: Path, labeling: ServiceProcess
) -> None:
    unsigned = _command("evil-unsigned")
    forged = Signer.admin("a-guessed-secret").sign(_command("evil-forged"))
    monitoring = Signer(
        service_principal("monitoring"),
        SERVICE_ROLE,
        derive_key(SECRET, service_principal("monitoring")),
    )
    ungranted = monitoring.sign(_command("evil-ungranted"))  # a valid key, not granted this
    genuine = Signer.admin(SECRET).sign(_command("evil-edited"))
    edited = genuine.model_copy(update={"spec": {**_spec("evil-edited"), "labels": ["x", "y"]}})
    attacks = [unsigned, forged, ungranted, edited]
    asyncio.run(
        produce(
            kafka,
            Topic.LABELING_PROJECT_REQUESTED.value,
            [a.to_bytes() for a in attacks],
            key=b"x",
        )
    )

    settings = ServiceSettings(kafka_bootstrap=kafka, data_dir=data_dir, admin_key=SECRET)

    async def send() -> LabelingProjectRequested:
        async with PlatformClient(settings) as client:  # the CLI's client: admin-signed
            sent = await client.publish(_command("good-sdk"))
        assert isinstance(sent, LabelingProjectRequested)
        assert sent.authority is not None
        return sent

    good = asyncio.run(send())
    base = f"http://127.0.0.1:{labeling.port}"
    http = httpx.Client(base_url=base, headers={"authorization": f"Bearer {SECRET}"}, timeout=60)

    def outcome(command_id: Any) -> dict[str, Any]:
        return http.get(f"/api/project-commands/{command_id}").raise_for_status().json()  # type: ignore[no-any-return]

    applied = wait_until(
        lambda: (o := outcome(good.event_id))["status"] != "pending" and o, timeout=120
    )
    assert applied["status"] == "applied"
    assert applied["created"] is True
    assert applied["actor"] == "admin"

    # `llmops label project create`: checks the file, publishes signed, waits for the outcome
    env = {
        **os.environ,
        "LLMOPS_KAFKA_BOOTSTRAP": kafka,
        "LLMOPS_DATA_DIR": str(data_dir),
        "LLMOPS_ADMIN_KEY": SECRET,
        "LLMOPS_LABELING_URL": base,
    }
    cli_file = data_dir / "project.yaml"
    cli_file.write_text(json.dumps(_spec("good-cli")))
    created = subprocess.run(
        [LLMOPS, "label", "project", "create", str(cli_file)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert created.returncode == 0, created.stderr
    assert "project good-cli created: 0 task(s) added" in created.stdout
    cli_file.write_text(json.dumps({"name": "good-cli", "task": "classification"}))
    invalid = subprocess.run(
        [LLMOPS, "label", "project", "create", str(cli_file)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert invalid.returncode == 2
    assert "needs labels" in invalid.stderr

    # the API signs for its caller with the service's key; the bus verifies it like any
    api = http.post("/api/projects", content=json.dumps(_spec("good-api")))
    assert api.status_code == 200, api.text
    assert api.json()["status"] == "applied"

    # the attacks came first on the one partition: they were judged before the good one
    ids = {str(a.event_id) for a in attacks}
    dead = _of(
        kafka,
        Topic.LABELING_PROJECT_REQUESTED.dlq,
        lambda r: json.loads(r.value).get("event_id") in ids,
        at_least=len(attacks),
    )
    headers = {json.loads(r.value)["event_id"]: {k: v.decode() for k, v in r.headers} for r in dead}
    assert set(headers) == ids
    assert {h["x-llmops-dlq-reason"] for h in headers.values()} == {"unauthorized"}
    assert headers[str(unsigned.event_id)]["x-llmops-dlq-error"] == "unsigned"
    assert "is not admin's" in headers[str(forged.event_id)]["x-llmops-dlq-error"]
    assert (
        "may not issue llmops.labeling-project.requested"
        in (headers[str(ungranted.event_id)]["x-llmops-dlq-error"])
    )
    assert headers[str(edited.event_id)]["x-llmops-dlq-error"] == "bad signature"

    offsets = {h["x-llmops-dlq-offset"] for h in headers.values()}

    def rejected(record: Any) -> bool:
        event = decode(record.value)
        return (
            isinstance(event, AuditRecorded)
            and event.action == "command.rejected"
            and not event.allowed
            and event.details.get("consumer") == "labeling"
            and str(event.details.get("offset")) in offsets
        )

    _of(kafka, Topic.AUDIT_RECORDED.value, rejected, at_least=len(attacks))

    # nothing changed: only the genuine projects exist, no attack has an outcome
    names = {p["project"] for p in http.get("/api/projects").raise_for_status().json()}
    assert names == {"good-sdk", "good-cli", "good-api"}
    for attack in attacks:
        assert outcome(attack.event_id)["status"] == "pending"
