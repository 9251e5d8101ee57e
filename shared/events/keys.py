"""Events of the API key registry (shared/keys.py): one compacted topic, keyed by key id."""

from __future__ import annotations

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
    only the admin or the key issuer's service principal may publish it.
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
