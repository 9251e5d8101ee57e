"""`llmops down` waits for consumer lag or refuses; `down` + `up` keeps every event.

One stack (ingestion alone) on the default settings (the durable embedded log, the serving
hops on a second broker in memory), driven as a user drives it.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path

import pytest

from shared.bus import resolve_dlq_value
from shared.events import AuditRecorded
from shared.stack.supervisor import pid_alive
from shared.storage.artifacts import ArtifactStore
from shared.topics import Topic
from tests.backbone.test_durable_log import consume_and_commit
from tests.integration.test_cli import llmops
from tests.support.stack import (
    USER_EMBEDDED_LOG,
    free_port,
    produce,
    read_topic,
    require_s3rver,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

INGESTION_GROUP = "ingestion"  # the group ingestion reports on /healthz for its requests


def ingest_request(name: str) -> str:
    return json.dumps({"dataset": name, "records": [{"text": f"a record for {name}"}]})


def ingestion_lag(env: dict[str, str]) -> int | None:
    lag = json.loads(llmops("status", "--json", env=env).stdout)["lag"]
    values = [
        n
        for group, topics in lag.items()
        if group == INGESTION_GROUP
        for topic, n in topics.items()
        if topic == Topic.INGEST_REQUESTED.value
    ]
    return values[0] if values else None


def test_down_waits_or_refuses_and_up_resumes_the_log(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On the DEFAULT settings: the durable log, the serving hops on a broker in memory."""
    require_s3rver()
    if USER_EMBEDDED_LOG is None:  # the platform's default, not the tests' memory
        monkeypatch.delenv("LLMOPS_EMBEDDED_LOG", raising=False)
    else:
        monkeypatch.setenv("LLMOPS_EMBEDDED_LOG", USER_EMBEDDED_LOG)
    bootstrap = f"127.0.0.1:{free_port()}"
    hops = f"127.0.0.1:{free_port()}"
    env = {
        "LLMOPS_DATA_DIR": str(data_dir),
        "LLMOPS_EMBEDDED_BOOTSTRAP": bootstrap,
        "LLMOPS_EMBEDDED_EPHEMERAL_BOOTSTRAP": hops,
        "LLMOPS_KAFKA_BOOTSTRAP": "",
    }
    up = llmops("up", "--detach", "--only", "ingestion", env=env, timeout=300)
    assert up.returncode == 0, up.stderr
    try:
        state = json.loads((data_dir / "stack.json").read_text())
        assert state["embedded_log"]["durable"] is True
        # the serving hops' broker runs beside the log, in memory, and `down` stops it
        assert state["ephemeral_bootstrap"] == hops
        serving_pid = state["embedded_log"]["serving_broker"]["pid"]
        assert pid_alive(serving_pid)
        status = json.loads(llmops("status", "--json", env=env).stdout)
        assert status["ephemeral_bootstrap"] == hops
        # a poison message: ingestion dead-letters it
        asyncio.run(produce(bootstrap, Topic.INGEST_REQUESTED.value, [b"not an event"]))
        # a good request: ingestion consumes it and commits
        ok = llmops("publish", "ingest.requested", "-", env=env, stdin=ingest_request("first"))
        assert ok.returncode == 0, ok.stderr
        wait_until(lambda: ingestion_lag(env) == 0, timeout=60, interval=1)
        # ten audit events; a group of ours consumes four of them and commits
        audits = [AuditRecorded(action="a", actor=f"actor-{i}", allowed=True) for i in range(10)]
        asyncio.run(produce(bootstrap, Topic.AUDIT_RECORDED.value, [e.to_bytes() for e in audits]))
        first = asyncio.run(
            consume_and_commit(bootstrap, Topic.AUDIT_RECORDED.value, "probe.audit", count=4)
        )

        # ingestion frozen: its group lags, and `down` refuses, naming it
        ingestion_pid = state["processes"][0]["pid"]
        os.kill(ingestion_pid, signal.SIGSTOP)
        try:
            late = llmops("publish", "ingest.requested", "-", env=env, stdin=ingest_request("late"))
            assert late.returncode == 0, late.stderr
            refused = llmops("down", "--wait", "3", env=env)
            assert refused.returncode == 1, refused.stderr
            assert "waiting for 1 consumer group" in refused.stderr
            assert "refusing to stop" in refused.stderr
            assert f"{INGESTION_GROUP} (1)" in refused.stderr
            assert (data_dir / "stack.json").exists()
        finally:
            os.kill(ingestion_pid, signal.SIGCONT)
        # thawed, it catches up while `down` waits; then everything stops
        down = llmops("down", "--wait", "90", env=env, timeout=180)
        assert down.returncode == 0, down.stderr
        said = " ".join(down.stderr.split())  # the console wraps long lines
        assert f"event log kept in {data_dir / 'log'}" in said
        assert f"in memory on {hops} by design" in said
        assert not (data_dir / "stack.json").exists()
        assert not pid_alive(serving_pid)

        up = llmops("up", "--detach", "--only", "ingestion", env=env, timeout=300)
        assert up.returncode == 0, up.stderr
        # the DLQ kept the poison message, with why
        dead = asyncio.run(read_topic(bootstrap, Topic.INGEST_REQUESTED.dlq, count=1))
        headers = {k: v.decode() for k, v in dead[0].headers}
        assert b"not an event" not in dead[0].value  # a raw hop: a claim check to transit
        transit = ArtifactStore(str(data_dir / "transit"))
        assert resolve_dlq_value(dead[0].value, headers, transit) == b"not an event"
        assert dict(dead[0].headers)["x-llmops-dlq-reason"] == b"undecodable"
        # the topic kept every event, and the group resumes after its committed offset
        # (read to a count: right after a restart the broker's end offsets were seen to lag)
        kept = asyncio.run(read_topic(bootstrap, Topic.AUDIT_RECORDED.value, count=10))
        assert sorted(r.value for r in kept) == sorted(e.to_bytes() for e in audits)
        rest = asyncio.run(
            consume_and_commit(bootstrap, Topic.AUDIT_RECORDED.value, "probe.audit", count=6)
        )
        assert sorted(first + rest) == sorted(e.to_bytes() for e in audits)
        # the group that lagged before `down` has nothing left to do
        assert ingestion_lag(env) == 0
        # the raw hop's records (ingest.requested) are in the log, but not in clear
        files = [p for p in (data_dir / "log").rglob("*") if p.is_file()]
        assert not [p for p in files if b"a record for" in p.read_bytes()]
    finally:
        llmops("down", "--force", env=env, timeout=120)
