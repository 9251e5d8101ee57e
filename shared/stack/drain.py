"""Before `llmops down`: wait until the running services' consumer groups have caught up."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from shared.stack.inspect import consumer_lag

Progress = Callable[[dict[str, int], float], None]


async def lagging_groups(bootstrap: str, groups: dict[str, list[str]]) -> dict[str, int]:
    """group -> events not yet consumed, for those of ``groups`` (group -> topics) that lag."""
    lag = await consumer_lag(bootstrap, groups)
    totals = {group: sum(topics.values()) for group, topics in lag.items() if group in groups}
    return {group: n for group, n in sorted(totals.items()) if n > 0}


async def wait_caught_up(
    bootstrap: str,
    groups: dict[str, list[str]],
    timeout_s: float,
    progress: Progress,
    interval_s: float = 1.0,
) -> dict[str, int]:
    """Poll until none of ``groups`` lags or ``timeout_s`` passes; returns what still
    lags (empty when every group caught up). ``progress(lagging, seconds_left)`` is called
    after every poll that found lag."""
    deadline = time.monotonic() + timeout_s
    while True:
        lagging = await lagging_groups(bootstrap, groups)
        if not lagging:
            return lagging
        left = deadline - time.monotonic()
        progress(lagging, max(0.0, left))
        if left <= 0:
            return lagging
        await asyncio.sleep(min(interval_s, left))


def describe(lagging: dict[str, int]) -> str:
    return ", ".join(f"{group} ({n})" for group, n in lagging.items())
