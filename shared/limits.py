"""Per-key rate limits: sliding 60 s windows of requests and tokens. Pure.

The serving gateway limits each key's requests and tokens per minute with it; the
anonymization admin API limits de-anonymization and erasure requests per key. A limit is
per process: N gateway instances admit up to N times a key's rate (docs/security.md)."""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol


class Limited(Protocol):
    """What the limiter reads of a key: its id and its requests and tokens per minute."""

    @property
    def key_id(self) -> str: ...

    @property
    def rpm(self) -> int: ...

    @property
    def tpm(self) -> int: ...


@dataclass
class _Window:
    requests: deque[float] = field(default_factory=deque)
    tokens: deque[tuple[float, int]] = field(default_factory=deque)
    token_sum: int = 0
    streaming: int = 0  # tokens of live streams, not charged yet (settled when they end)


class RateLimiter:
    """Sliding 60 s windows per key. ``check`` admits a request or says how long to wait."""

    WINDOW_S = 60.0

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.windows: dict[str, _Window] = {}

    def _window(self, key_id: str, now: float) -> _Window:
        window = self.windows.setdefault(key_id, _Window())
        while window.requests and window.requests[0] <= now - self.WINDOW_S:
            window.requests.popleft()
        while window.tokens and window.tokens[0][0] <= now - self.WINDOW_S:
            window.token_sum -= window.tokens.popleft()[1]
        return window

    def check(self, key: Limited) -> tuple[str, int] | None:
        """None if admitted (and counted); else (which limit, retry-after seconds)."""
        now = self.clock()
        window = self._window(key.key_id, now)
        if len(window.requests) >= key.rpm:
            wait = window.requests[0] + self.WINDOW_S - now
            return "requests", max(1, math.ceil(wait))
        if window.token_sum + window.streaming >= key.tpm:
            wait = window.tokens[0][0] + self.WINDOW_S - now if window.tokens else self.WINDOW_S
            return "tokens", max(1, math.ceil(wait))
        window.requests.append(now)
        return None

    def stream(self, key: Limited, tokens: int) -> bool:
        """Count ``tokens`` a live stream of ``key`` just received: False once the key's
        tokens of the last minute, every live stream's included, are over its limit."""
        window = self._window(key.key_id, self.clock())
        window.streaming += tokens
        return window.token_sum + window.streaming <= key.tpm

    def settle(self, key: Limited, streamed: int, used: int) -> None:
        """A request ended: its live-stream count goes, what it used is charged."""
        window = self.windows.setdefault(key.key_id, _Window())
        window.streaming = max(0, window.streaming - streamed)
        self.charge(key, used)

    def charge(self, key: Limited, tokens: int) -> None:
        if tokens <= 0:
            return
        now = self.clock()
        window = self._window(key.key_id, now)
        window.tokens.append((now, tokens))
        window.token_sum += tokens
