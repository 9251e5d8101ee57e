"""The audit service as a real process: events in, chain out, `llmops audit` reads it."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import uuid
from pathlib import Path

import httpx
import pytest

from shared.events import AuditRecorded
from shared.topics import Topic
from tests.integration.test_cli import llmops
from tests.support.stack import ServiceProcess, produce, wait_until

pytestmark = pytest.mark.integration

ADMIN_KEY = "audit-test-admin-key-0123456789"


def test_every_audit_event_is_chained_once_and_tampering_is_found(
    kafka: str, data_dir: Path, tmp_path: Path
) -> None:
    marker = uuid.uuid4().hex[:8]
    env = {
        "LLMOPS_KAFKA_BOOTSTRAP": kafka,
        "LLMOPS_DATA_DIR": str(data_dir),
        "LLMOPS_ADMIN_KEY": ADMIN_KEY,
        "LLMOPS_LOG_FORMAT": "text",
    }
    service = ServiceProcess("services.audit", env, tmp_path / "audit.log").start()
    base = f"http://127.0.0.1:{service.port}"
    cli_env = {**env, "LLMOPS_AUDIT_PORT": str(service.port)}
    try:
        events = [
            AuditRecorded(
                action="erasure.request", actor="k1", allowed=True, target=f"{marker}-{i}"
            )
            for i in range(5)
        ]
        raw = [e.to_bytes() for e in events]
        # the third event is delivered twice (at-least-once): it must be chained once
        asyncio.run(produce(kafka, Topic.AUDIT_RECORDED.value, [*raw, raw[2]]))

        def mine() -> list[dict[str, object]]:
            listed = llmops("audit", "list", "--json", "--limit", "1000", env=cli_env)
            assert listed.returncode == 0, listed.stderr
            rows = [json.loads(line) for line in listed.stdout.splitlines()]
            return [r for r in rows if str(r["target"]).startswith(marker)]

        rows = wait_until(lambda: len(mine()) >= 5 and mine(), timeout=60)
        assert sorted(str(r["target"]) for r in rows) == [f"{marker}-{i}" for i in range(5)]
        assert len({r["event_id"] for r in rows}) == 5

        intact = llmops("audit", "verify", "--json", env=cli_env)
        assert intact.returncode == 0, intact.stdout + intact.stderr
        assert json.loads(intact.stdout)["ok"] is True

        refused = httpx.get(f"{base}/v1/audit", headers={"X-API-Key": "wrong"}, timeout=10)
        assert refused.status_code == 401  # not a key of the registry
        assert "entries" not in refused.json()

        # someone with the database file goes around the triggers: the chain still tells
        seq = int(rows[2]["seq"])  # type: ignore[call-overload]
        with sqlite3.connect(data_dir / "audit.db") as db:
            db.execute("DROP TRIGGER audit_entry_no_update")
            db.execute("UPDATE audit_entry SET allowed = 0 WHERE seq = ?", (seq,))
        broken = llmops("audit", "verify", "--json", env=cli_env)
        assert broken.returncode == 1
        assert json.loads(broken.stdout)["first_bad"] == seq
    finally:
        service.stop()
