"""Several gateway processes on one port (LLMOPS_GATEWAY_WORKERS): each is a gateway instance
of its own, with its own reply topic, and each deletes it when it stops."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from shared.wire import reply_topic
from tests.support.stack import ServiceProcess, list_topics, wait_until

pytestmark = pytest.mark.integration


def test_gateway_processes_share_the_port_each_with_its_own_reply_topic(
    kafka: str, tmp_path: Path
) -> None:
    env = {
        "LLMOPS_KAFKA_BOOTSTRAP": kafka,
        "LLMOPS_DATA_DIR": str(tmp_path / "data"),
        "LLMOPS_ADMIN_KEY": "sk-llmops-test-processes",
        "LLMOPS_LOG_FORMAT": "text",
        "LLMOPS_GATEWAY_ID": "gwproc",
        "LLMOPS_GATEWAY_WORKERS": "2",
    }
    gateway = ServiceProcess("services.serving.gateway", env, tmp_path / "gateway.log")
    gateway.start(timeout=180)
    seen: set[str] = set()

    def both_answered() -> bool:
        with httpx.Client(timeout=5) as http:  # a new connection each time
            health = http.get(f"http://127.0.0.1:{gateway.port}/healthz")
            if health.status_code == 200:
                seen.add(health.json()["gateway_id"])
        return len(seen) == 2

    try:
        wait_until(both_answered, timeout=120, interval=0.05)
        assert all(gateway_id.startswith("gwproc-") for gateway_id in seen)
        topics = {reply_topic(gateway_id) for gateway_id in seen}
        assert topics <= asyncio.run(list_topics(kafka))
    finally:
        gateway.stop()
    try:
        wait_until(lambda: not topics & asyncio.run(list_topics(kafka)), timeout=30, interval=0.5)
    except TimeoutError:
        left = topics & asyncio.run(list_topics(kafka))
        raise AssertionError(f"reply topics left: {left}\n{gateway.log_tail(80)}") from None

