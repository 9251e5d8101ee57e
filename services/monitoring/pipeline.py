"""The pipeline poller: messages per topic, consumer lag, dead letters; lag and DLQ alerts."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from datetime import UTC, datetime
from typing import Any

from services.monitoring import metrics
from shared.stack.inspect import consumer_lag, topic_offsets
from shared.topics import DLQ_SUFFIX

log = logging.getLogger(__name__)


def snapshot(topics: dict[str, dict[str, Any]], lag: dict[str, dict[str, int]]) -> dict[str, Any]:
    messages = {t: v["messages"] for t, v in topics.items() if not t.endswith(DLQ_SUFFIX)}
    dlq = {t: v["messages"] for t, v in topics.items() if t.endswith(DLQ_SUFFIX)}
    return {
        "at": datetime.now(UTC).isoformat(),
        "messages": messages,
        "dlq": dlq,
        "lag": lag,
        "max_lag": max((n for g in lag.values() for n in g.values()), default=0),
        "dlq_total": sum(dlq.values()),
    }


def breaches(
    previous: dict[str, Any] | None, current: dict[str, Any], max_lag: int, dlq_growth: int
) -> list[tuple[str, str, dict[str, str]]]:
    """(alert name, summary, labels) for lag above the SLO and dead letters that grew."""
    found: list[tuple[str, str, dict[str, str]]] = []
    for group, per_topic in current["lag"].items():
        for topic, lag in per_topic.items():
            if lag > max_lag:
                found.append(
                    (
                        "consumer_lag",
                        f"{group} is {lag} behind on {topic}",
                        {"group": group, "topic": topic, "lag": str(lag)},
                    )
                )
    if previous is not None:
        for topic, count in current["dlq"].items():
            grew = count - previous["dlq"].get(topic, 0)
            if grew >= dlq_growth > 0:
                found.append(
                    (
                        "dlq_growth",
                        f"{grew} new dead letters on {topic}",
                        {"topic": topic, "new": str(grew), "total": str(count)},
                    )
                )
    return found


class PipelinePoller:
    """Polls the broker every ``interval_s``; keeps a short history for the dashboards."""

    def __init__(
        self,
        bootstrap: str,
        interval_s: float,
        on_breach: Any,
        max_lag: int,
        dlq_growth: int,
        *,
        ephemeral_bootstrap: str | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        # the serving hops' broker (in memory on the embedded stack): lag on
        # inference.requested is read there
        self.ephemeral_bootstrap = ephemeral_bootstrap
        self.interval_s = interval_s
        self.on_breach = on_breach
        self.max_lag = max_lag
        self.dlq_growth = dlq_growth
        self.history: deque[dict[str, Any]] = deque(maxlen=360)
        self._task: asyncio.Task[None] | None = None

    async def poll_once(self) -> dict[str, Any]:
        hot = self.ephemeral_bootstrap
        current = snapshot(
            await topic_offsets(self.bootstrap, hot),
            await consumer_lag(self.bootstrap, ephemeral_bootstrap=hot),
        )
        previous = self.history[-1] if self.history else None
        self.history.append(current)
        for topic, count in current["messages"].items():
            metrics.topic_messages.set(count, {"messaging.destination.name": topic})
        for topic, count in current["dlq"].items():
            metrics.dlq_messages.set(count, {"messaging.destination.name": topic})
        for group, per_topic in current["lag"].items():
            for topic, lag in per_topic.items():
                metrics.consumer_lag.set(
                    lag,
                    {"messaging.consumer.group.name": group, "messaging.destination.name": topic},
                )
        found = breaches(previous, current, self.max_lag, self.dlq_growth)
        if found:
            self.on_breach(found)
        return current

    async def _run(self) -> None:
        while True:
            try:
                await self.poll_once()
            except Exception as exc:  # the broker may be restarting: try again next round
                log.warning("pipeline poll failed", extra={"error": repr(exc)})
            await asyncio.sleep(self.interval_s)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
