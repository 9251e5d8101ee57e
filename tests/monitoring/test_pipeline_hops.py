"""Lag on the serving hops is a serving signal: the pipeline poller (and `llmops status`)
read it on the hops' broker as well as the log's. Two real brokers, each topic on its own."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from services.monitoring.pipeline import PipelinePoller
from shared.stack.broker import start_broker, stop_process
from shared.stack.inspect import consumer_lag, topic_offsets
from shared.topics import Topic, ensure_topics
from tests.backbone.test_durable_log import consume_and_commit
from tests.support.stack import free_port, produce

pytestmark = pytest.mark.integration


@pytest.fixture
def brokers(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(main log, serving hops): two tansus, each with its topics only."""
    procs: list[subprocess.Popen[bytes]] = []
    addresses = [f"127.0.0.1:{free_port()}" for _ in range(2)]
    try:
        for address in addresses:
            procs.append(start_broker(address, tmp_path / f"{address.rsplit(':')[-1]}.log"))
        yield addresses[0], addresses[1]
    finally:
        for proc in procs:
            with contextlib.suppress(Exception):
                stop_process(proc)


async def test_lag_and_counts_of_both_brokers(brokers: tuple[str, str]) -> None:
    main, hops = brokers
    await ensure_topics(main, ephemeral_bootstrap=hops)
    await produce(hops, Topic.INFERENCE_REQUESTED.value, [b"r1", b"r2", b"r3"], key=b"k")
    await produce(main, Topic.AUDIT_RECORDED.value, [b"a1", b"a2"], key=b"k")
    await consume_and_commit(hops, Topic.INFERENCE_REQUESTED.value, "probe", count=1)
    await consume_and_commit(main, Topic.AUDIT_RECORDED.value, "probe", count=1)

    lag = await consumer_lag(main, ephemeral_bootstrap=hops)
    assert lag["probe"] == {Topic.INFERENCE_REQUESTED.value: 2, Topic.AUDIT_RECORDED.value: 1}
    # one broker's view alone misses the other's topics: the split is real
    assert Topic.INFERENCE_REQUESTED.value not in (await consumer_lag(main)).get("probe", {})
    counts = await topic_offsets(main, hops)
    assert counts[Topic.INFERENCE_REQUESTED.value]["messages"] == 3
    assert counts[Topic.AUDIT_RECORDED.value]["messages"] == 2
    assert counts[Topic.INFERENCE_REQUESTED.dlq]["messages"] == 0  # on the log

    alerts: list[Any] = []
    poller = PipelinePoller(main, 60, alerts.extend, 1, 10, ephemeral_bootstrap=hops)
    current = await poller.poll_once()
    assert current["messages"][Topic.INFERENCE_REQUESTED.value] == 3
    assert current["max_lag"] == 2
    assert [(name, labels["topic"]) for name, _, labels in alerts] == [
        ("consumer_lag", Topic.INFERENCE_REQUESTED.value)
    ]
