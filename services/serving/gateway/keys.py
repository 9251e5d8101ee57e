"""API keys and limits: roles, per-key requests- and tokens-per-minute. Pure.

Hashing and the role order are the platform's one key registry's (shared/keys.py); this
module adds what the gateway does with a key: which of its actions each role may take, and
the per-key limits."""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from shared.keys import KEY_PREFIX, ApiPrincipal, hash_key, key_id_of, new_secret

__all__ = [
    "KEY_PREFIX",
    "Action",
    "KeyInfo",
    "RateLimiter",
    "Role",
    "hash_key",
    "key_id_of",
    "new_secret",
]


class Role(StrEnum):
    """The registry's roles (shared/keys.py: viewer < user < annotator < operator < admin);
    ``engineer`` is the gateway's older name of a model user."""

    ADMIN = "admin"
    OPERATOR = "operator"
    ENGINEER = "engineer"
    USER = "user"
    ANNOTATOR = "annotator"
    VIEWER = "viewer"


class Action(StrEnum):
    LIST_MODELS = "models"
    INFER = "infer"
    FEEDBACK = "feedback"
    MANAGE_KEYS = "keys"


PERMISSIONS: dict[Role, set[Action]] = {
    Role.ADMIN: set(Action),
    Role.OPERATOR: {Action.LIST_MODELS, Action.INFER, Action.FEEDBACK},
    Role.ENGINEER: {Action.LIST_MODELS, Action.INFER, Action.FEEDBACK},
    Role.USER: {Action.LIST_MODELS, Action.INFER, Action.FEEDBACK},
    Role.ANNOTATOR: {Action.LIST_MODELS, Action.FEEDBACK},
    Role.VIEWER: {Action.LIST_MODELS},
}


@dataclass(frozen=True)
class KeyInfo:
    key_id: str
    name: str
    role: Role
    rpm: int
    tpm: int

    def may(self, action: Action) -> bool:
        return action in PERMISSIONS[self.role]

    @classmethod
    def of(cls, principal: ApiPrincipal) -> KeyInfo | None:
        """The gateway's view of a registry principal (None for a role it does not know)."""
        try:
            role = Role(principal.role)
        except ValueError:
            return None
        return cls(principal.key_id, principal.name, role, principal.rpm, principal.tpm)


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

    def check(self, key: KeyInfo) -> tuple[str, int] | None:
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

    def stream(self, key: KeyInfo, tokens: int) -> bool:
        """Count ``tokens`` a live stream of ``key`` just received: False once the key's
        tokens of the last minute, every live stream's included, are over its limit."""
        window = self._window(key.key_id, self.clock())
        window.streaming += tokens
        return window.token_sum + window.streaming <= key.tpm

    def settle(self, key: KeyInfo, streamed: int, used: int) -> None:
        """A request ended: its live-stream count goes, what it used is charged."""
        window = self.windows.setdefault(key.key_id, _Window())
        window.streaming = max(0, window.streaming - streamed)
        self.charge(key, used)

    def charge(self, key: KeyInfo, tokens: int) -> None:
        if tokens <= 0:
            return
        now = self.clock()
        window = self._window(key.key_id, now)
        window.tokens.append((now, tokens))
        window.token_sum += tokens
