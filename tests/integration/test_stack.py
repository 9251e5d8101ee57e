"""`llmops up --detach`, `status` and `down` on a real embedded stack."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path

import pytest

from shared.events import IngestRequested
from shared.stack.supervisor import pid_alive
from shared.topics import Topic
from tests.integration.test_cli import llmops
from tests.support.stack import free_port, produce, wait_until

pytestmark = pytest.mark.integration


def test_up_status_publish_consume_down_leaves_nothing(data_dir: Path) -> None:
    env = {
        "LLMOPS_DATA_DIR": str(data_dir),
        "LLMOPS_EMBEDDED_BOOTSTRAP": f"127.0.0.1:{free_port()}",
        "LLMOPS_EMBEDDED_EPHEMERAL_BOOTSTRAP": f"127.0.0.1:{free_port()}",
        "LLMOPS_KAFKA_BOOTSTRAP": "",
        "LLMOPS_REQUIRE_AUTHORITY": "true",  # as for a user
        "LLMOPS_INGESTION_PORT": str(free_port()),  # never a running stack's 9101
    }
    up = llmops("up", "--detach", "--only", "ingestion", env=env, timeout=300)
    assert up.returncode == 0, up.stderr
    state = json.loads((data_dir / "stack.json").read_text())
    pids = [state["supervisor_pid"], state["embedded_broker_pid"]] + [
        p["pid"] for p in state["processes"]
    ]
    try:
        supervisor_log = (data_dir / "logs" / "supervisor.log").read_text()
        assert "admin API key created" in supervisor_log
        assert (data_dir / "admin.key").stat().st_mode & 0o077 == 0
        # the secret itself is never printed nor logged
        assert (data_dir / "admin.key").read_text().strip() not in supervisor_log + up.stderr

        # command authority: a public key and a signed registry, no secret in them; the
        # service gets its own signing key, not the admin key
        secret = (data_dir / "admin.key").read_text().strip()
        registry = (data_dir / "authority.json").read_text()
        assert "service:ingestion" in json.loads(registry)["principals"]
        assert secret not in registry + (data_dir / "authority.pub").read_text()
        child_env = Path(f"/proc/{state['processes'][0]['pid']}/environ").read_bytes()
        assert b"LLMOPS_AUTHORITY_PRINCIPAL=service:ingestion" in child_env
        assert b"LLMOPS_AUTHORITY_KEY=" in child_env
        assert secret.encode() not in child_env

        status = llmops("status", "--json", env=env)
        assert status.returncode == 0, status.stdout + status.stderr
        report = json.loads(status.stdout)
        assert [(p["label"], p["status"]) for p in report["processes"]] == [
            ("ingestion", "healthy")
        ]

        sent = llmops(
            "publish",
            "audit.recorded",
            "-",
            env=env,
            stdin=json.dumps({"action": "a", "actor": "stack-test", "allowed": True}),
        )
        assert sent.returncode == 0, sent.stderr
        got = llmops(
            "consume", "audit.recorded", "--from-beginning", "--max", "1", "--timeout", "5", env=env
        )
        assert json.loads(got.stdout)["event_id"] == json.loads(sent.stdout)["event_id"]

        # the ingestion service consumes a request; status shows its group caught up
        request = {"dataset": "stack-test", "records": [{"text": "a record for the stack test"}]}
        assert (
            llmops(
                "publish", "ingest.requested", "-", env=env, stdin=json.dumps(request)
            ).returncode
            == 0
        )

        def caught_up() -> bool:
            lag = json.loads(llmops("status", "--json", env=env).stdout)["lag"]
            return any(
                topics.get("llmops.ingest.requested.v1") == 0
                for group, topics in lag.items()
                if group.startswith("ingestion")
            )

        wait_until(caught_up, timeout=60, interval=1)
        done = llmops(
            "consume",
            "ingest.completed",
            "--from-beginning",
            "--max",
            "1",
            "--timeout",
            "10",
            env=env,
        )
        assert json.loads(done.stdout)["emitted"] == 1, done.stdout + done.stderr  # signed: applied

        # the same command, unsigned, from a plain Kafka client: dead-lettered, not applied
        unsigned = IngestRequested(dataset="stack-test", records=[{"text": "unsigned"}])
        asyncio.run(
            produce(
                env["LLMOPS_EMBEDDED_BOOTSTRAP"],
                Topic.INGEST_REQUESTED.value,
                [unsigned.to_bytes()],
            )
        )
        dead = llmops(
            "consume",
            "ingest.requested.dlq",
            "--from-beginning",
            "--max",
            "1",
            "--timeout",
            "30",
            "--resolve",
            env=env,
        )
        record = json.loads(dead.stdout)
        # a raw hop: the DLQ record is a claim check, the bytes sit in the transit store
        assert "unsigned" not in record["value"]
        assert record["headers"]["x-llmops-dlq-claim"] == "transit"
        assert json.loads(record["original"])["event_id"] == str(unsigned.event_id)
        assert record["headers"]["x-llmops-dlq-reason"] == "unauthorized"
        assert record["headers"]["x-llmops-dlq-error"] == "unsigned"

        # a service that dies is restarted by the supervisor
        victim = state["processes"][0]["pid"]
        os.kill(victim, signal.SIGKILL)
        wait_until(
            lambda: (
                (s := json.loads((data_dir / "stack.json").read_text()))["processes"][0]["pid"]
                != victim
                and s["processes"][0]["healthy"]
            ),
            timeout=90,
            interval=0.5,
        )
        pids.append(json.loads((data_dir / "stack.json").read_text())["processes"][0]["pid"])
        assert (data_dir / "logs" / "ingestion.log").exists()
    finally:
        down = llmops("down", env=env, timeout=120)
    assert down.returncode == 0, down.stderr
    wait_until(lambda: not any(pid_alive(p) for p in pids), timeout=10)
    assert not (data_dir / "stack.json").exists()
    assert llmops("status", env=env).returncode == 1


def test_missing_broker_binary_says_what_to_do(data_dir: Path) -> None:
    env = {
        "LLMOPS_DATA_DIR": str(data_dir),
        "LLMOPS_TANSU_BIN": "/nonexistent/tansu",
        "LLMOPS_KAFKA_BOOTSTRAP": "",
        "LLMOPS_EMBEDDED_BOOTSTRAP": f"127.0.0.1:{free_port()}",
        "LLMOPS_EMBEDDED_EPHEMERAL_BOOTSTRAP": f"127.0.0.1:{free_port()}",
    }
    result = llmops("up", "--only", "ingestion", env=env, timeout=60)
    assert result.returncode != 0
    assert "LLMOPS_KAFKA_BOOTSTRAP" in result.stderr
    assert "not found" in result.stderr or "does not exist" in result.stderr
