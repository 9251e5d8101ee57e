"""API keys and limits: roles, per-key requests- and tokens-per-minute. Pure.

Hashing and the role order are the platform's one key registry's (shared/keys.py); this
module adds what the gateway does with a key: which of its actions each role may take, and
the per-key limits (``RateLimiter``, shared/limits.py)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from shared.keys import KEY_PREFIX, ApiPrincipal, hash_key, key_id_of, new_secret
from shared.limits import RateLimiter

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
    expires_at: datetime | None = None  # None: never

    def may(self, action: Action) -> bool:
        return action in PERMISSIONS[self.role]

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and now >= self.expires_at

    @classmethod
    def of(cls, principal: ApiPrincipal) -> KeyInfo | None:
        """The gateway's view of a registry principal (None for a role it does not know)."""
        try:
            role = Role(principal.role)
        except ValueError:
            return None
        return cls(
            principal.key_id,
            principal.name,
            role,
            principal.rpm,
            principal.tpm,
            principal.expires_at,
        )
