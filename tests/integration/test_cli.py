"""The `llmops` command against the real broker, as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from shared.events import AuditRecorded
from shared.topics import Topic
from tests.support.stack import read_topic

pytestmark = pytest.mark.integration


def llmops(
    *args: str, env: dict[str, str], stdin: str | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shared.cli.main", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **env},
        check=False,
    )


@pytest.fixture
def cli_env(kafka: str, data_dir: Path) -> dict[str, str]:
    return {"LLMOPS_KAFKA_BOOTSTRAP": kafka, "LLMOPS_DATA_DIR": str(data_dir)}


async def test_publish_then_consume_returns_the_event(
    kafka: str, cli_env: dict[str, str], tmp_path: Path
) -> None:
    event = {"action": "key.create", "actor": "cli-test", "allowed": True, "target": "roundtrip"}
    source = tmp_path / "event.json"
    source.write_text(json.dumps(event))
    sent = llmops("publish", "audit.recorded", str(source), env=cli_env)
    assert sent.returncode == 0, sent.stderr
    event_id = json.loads(sent.stdout)["event_id"]

    got = llmops(
        "consume", Topic.AUDIT_RECORDED.value, "--from-beginning", "--timeout", "3", env=cli_env
    )
    assert got.returncode == 0, got.stderr
    lines = [json.loads(line) for line in got.stdout.splitlines()]
    mine = [e for e in lines if e["event_id"] == event_id]
    assert len(mine) == 1
    assert mine[0]["target"] == "roundtrip"
    assert mine[0]["producer"] == "cli"
    AuditRecorded.model_validate(mine[0])


async def test_invalid_event_exits_2_lists_errors_and_sends_nothing(
    kafka: str, cli_env: dict[str, str]
) -> None:
    before = len(await read_topic(kafka, Topic.AUDIT_RECORDED.value, count=100_000, timeout=2))
    bad = json.dumps({"action": 5, "allowed": "perhaps", "surprise": 1})
    result = llmops("publish", "audit.recorded", "-", env=cli_env, stdin=bad)
    assert result.returncode == 2
    for field in ("action", "actor", "allowed", "surprise"):
        assert field in result.stderr
    assert "nothing was sent" in result.stderr
    after = len(await read_topic(kafka, Topic.AUDIT_RECORDED.value, count=100_000, timeout=2))
    assert after == before


def test_a_batch_with_one_bad_item_sends_none(cli_env: dict[str, str]) -> None:
    lines = "\n".join(
        [
            json.dumps({"action": "a", "actor": "x", "allowed": True}),
            json.dumps({"action": "b", "allowed": True}),
        ]
    )
    result = llmops("publish", "audit.recorded", "-", env=cli_env, stdin=lines)
    assert result.returncode == 2
    assert "item 2: actor" in result.stderr


def test_unknown_topic_and_broken_json_are_clear_errors(cli_env: dict[str, str]) -> None:
    unknown = llmops("publish", "nope.nothing", "-", env=cli_env, stdin="{}")
    assert unknown.returncode == 2
    assert "unknown topic" in unknown.stderr
    broken = llmops("publish", "audit.recorded", "-", env=cli_env, stdin='{"a": 1}\n{oops')
    assert broken.returncode == 2
    assert "line 2" in broken.stderr


def test_topics_lists_partitions_and_counts(cli_env: dict[str, str]) -> None:
    result = llmops("topics", "--json", env=cli_env)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data[Topic.RECORDS_INGESTED.value]["partitions"] == Topic.RECORDS_INGESTED.partitions
    assert Topic.RECORDS_INGESTED.dlq in data


def test_unreachable_broker_is_a_clear_message(data_dir: Path) -> None:
    env = {"LLMOPS_KAFKA_BOOTSTRAP": "127.0.0.1:1", "LLMOPS_DATA_DIR": str(data_dir)}
    result = llmops(
        "publish",
        "audit.recorded",
        "-",
        env=env,
        stdin=json.dumps({"action": "a", "actor": "x", "allowed": True}),
    )
    assert result.returncode == 3
    assert "cannot reach Kafka" in result.stderr
