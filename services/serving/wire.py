"""Serving's own Kafka channels beside the platform catalogue, the only serving code both the
gateway and the workers import: worker heartbeats, the cancel channel, and how they are
created. The reply protocol (reply topics, chunk frames) lives in ``shared/wire.py``: other
services ask the models through Kafka too.

Heartbeats go to one compacted-in-spirit topic every worker and gateway share.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

from shared.topics import CANCEL_TOPIC, Topic, ensure_topics
from shared.wire import create_channel

HEARTBEAT_TOPIC = Topic.WORKER_HEARTBEAT.value
# Gateways ask workers to stop a generation nobody reads any more (client gone). Every worker
# reads every cancel (no group); the one generating that request aborts it in its engine.
# The topic's name lives in shared.topics: it is a serving hop (``bootstrap_for``).
CANCEL_KIND = b"llmops.inference.cancel"

log = logging.getLogger(__name__)


class FetchPace:
    """How long a latency-bound consumer's fetches wait at the broker, by how busy it is.

    The embedded broker does not wake a waiting fetch when data arrives (it looks again at
    halving steps of the wait, so a record waits about a quarter of it, and answers an empty
    fetch when the wait ends), so the reply and request consumers fetch with a wait of a few
    ms: about 100 fetches a second each, which costs the broker and the consumer's process
    CPU even when nothing happens. While its owner has work in flight (or had, ``linger_s`` ago) a
    consumer fetches with ``busy_ms``; idle, with ``idle_ms``: the first request after a
    quiet spell may wait up to that long once, then the pace is fast again.

    aiokafka has no public setter: its fetcher reads ``_fetch_max_wait_ms`` for every fetch
    it builds. On a consumer without one (another client version), the pace stays as the
    consumer was built, and says so once.
    """

    def __init__(
        self,
        busy_ms: int,
        idle_ms: int,
        *,
        linger_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.busy_ms = busy_ms
        self.idle_ms = max(busy_ms, idle_ms)
        self.linger_s = linger_s
        self.clock = clock
        self.consumer: Any = None
        self.current: int | None = None  # the wait the consumer's fetches use now
        self._last_busy = float("-inf")

    def attach(self, consumer: Any) -> None:
        """Pace ``consumer`` (a started aiokafka consumer) from now on."""
        if consumer is not self.consumer:
            self.consumer, self.current = consumer, None
            self.settle(active=False)

    def busy(self) -> None:
        """Work is in flight: fetch at the fast pace."""
        self._last_busy = self.clock()
        if self.current != self.busy_ms:
            self._set(self.busy_ms)

    def settle(self, active: bool) -> None:
        """Called now and then: busy while ``active``, idle once ``linger_s`` passed."""
        if active:
            self.busy()
        elif self.current != self.idle_ms and self.clock() - self._last_busy >= self.linger_s:
            self._set(self.idle_ms)

    def _set(self, wait_ms: int) -> None:
        fetcher = getattr(self.consumer, "_fetcher", None)
        if fetcher is None or not hasattr(fetcher, "_fetch_max_wait_ms"):
            if self.consumer is not None and self.current is None:
                log.warning("consumer fetch wait cannot be paced; it stays as configured")
                self.current = -1
            return
        fetcher._fetch_max_wait_ms = wait_ms
        self.current = wait_ms


def cancel_frame(request_id: str) -> bytes:
    return json.dumps({"kind": CANCEL_KIND.decode(), "request_id": request_id}).encode()


def cancelled_request(frame: bytes) -> str | None:
    """The request id of a cancel frame; None for anything else."""
    try:
        data = json.loads(frame)
    except ValueError:
        return None
    if not isinstance(data, dict) or data.get("kind") != CANCEL_KIND.decode():
        return None
    request_id = data.get("request_id")
    return request_id if isinstance(request_id, str) else None


async def ensure_serving_topics(
    bootstrap: str, replication_factor: int = 1, *, ephemeral_bootstrap: str | None = None
) -> None:
    """Every catalogue topic on its broker, and the cancel channel on the serving hops'
    (``ephemeral_bootstrap``, default ``bootstrap``)."""
    await ensure_topics(
        bootstrap, replication_factor=replication_factor, ephemeral_bootstrap=ephemeral_bootstrap
    )
    await create_channel(ephemeral_bootstrap or bootstrap, CANCEL_TOPIC, replication_factor)
