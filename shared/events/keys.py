"""Events of the API key registry (shared/keys.py): one compacted topic, keyed by key id."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from shared.events.envelope import Event
from shared.events.registry import register

ROLE_PATTERN = r"^(viewer|user|engineer|annotator|operator|admin)$"


@register("llmops.api-key.changed")
class ApiKeyChanged(Event):
    """The whole current state of one API key: issued, or revoked (for good).

    The topic is compacted on ``key_id``: its latest record per key is the key's state, so a
    reader that replays it from the beginning knows every live and revoked key. Only the
    sha256 of a key travels, never the key. Signed like a command (shared/authority.py):
    only the admin or the key issuer's service principal may publish it (never a user key).
    A key that carries ``public_key`` lets its holder sign commands as ``user:<name>`` with
    the key's role, until it is revoked or ``expires_at``.
    """

    key_id: str = Field(
        pattern=r"^[0-9a-f]{12}$", description="First 12 hex of the key's sha256 (its name)."
    )
    key_hash: str = Field(pattern=r"^[0-9a-f]{64}$", description="sha256 of the key, hex.")
    name: str = Field(max_length=100, description="Whom the key is for (a principal name).")
    role: str = Field(
        pattern=ROLE_PATTERN, description="viewer < user < annotator < operator < admin."
    )
    rpm: int = Field(ge=0, description="Requests per minute the gateway admits.")
    tpm: int = Field(ge=0, description="Tokens per minute the gateway admits.")
    revoked: bool = Field(False, description="Revoked keys are refused everywhere, for good.")
    actor: str = Field("", description="Key id of who issued or revoked it.")
    public_key: str = Field(
        "",
        pattern=r"^([A-Za-z0-9_-]{43})?$",
        description="The holder's Ed25519 public key (base64url, 32 bytes), if the key also "
        "signs commands as principal `user:<name>` (shared/authority.py); empty: it does not.",
    )
    expires_at: datetime | None = Field(
        None,
        description="When the key (and its signing key) stops working (UTC); none: never.",
    )
