"""A background loop: a step run when kicked or every interval, retried with backoff.

The outbox relay, ingestion's job runner and the gateway's reply router share it: one
asyncio task, ``kick()`` from code on the event loop (from a thread:
``loop.call_soon_threadsafe(bg.kick)``), ``stop()`` cancels and awaits the task. A step
returns True when there may be more work right away (the loop runs it again without
waiting). A step that raises is logged and retried after
``retry_s * 2**(failures - 1)`` seconds (at most ``max_retry_s``) without waiting for a
kick; a success resets the count.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


class BackgroundLoop:
    def __init__(
        self,
        name: str,
        step: Callable[[], Awaitable[bool | None]],
        *,
        interval_s: float,
        linger_s: float = 0.0,
        retry_s: float | None = None,
        max_retry_s: float | None = None,
    ) -> None:
        self.name = name
        self.step = step
        self.interval_s = interval_s
        self.linger_s = linger_s
        self.retry_s = interval_s if retry_s is None else retry_s
        self.max_retry_s = self.retry_s if max_retry_s is None else max_retry_s
        self.failures = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def kick(self) -> None:
        self._wake.set()

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def alive(self) -> bool:
        return self._task is not None and not self._task.done()

    async def _wait(self) -> None:
        # asyncio.timeout, not wait_for: Python 3.11's wait_for swallows a cancel that lands
        # as a kick completes the wait, and stop() then waits for a loop that never ends
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.interval_s):
                await self._wake.wait()
        # a short linger lets a busy producer commit a little more: one step takes it all
        if self.linger_s:
            await asyncio.sleep(self.linger_s)
        self._wake.clear()

    async def _run(self) -> None:
        more = False
        while True:
            if not more:
                await self._wait()
            try:
                more = bool(await self.step())
                self.failures = 0
            except asyncio.CancelledError:
                raise
            except Exception:
                self.failures += 1
                log.exception("%s failed; will retry", self.name)
                await asyncio.sleep(min(self.max_retry_s, self.retry_s * 2 ** (self.failures - 1)))
                more = True  # the retry: after the backoff, not after another interval
