"""The envelope every event extends, and the claim check for large payloads."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, model_validator


def utcnow() -> datetime:
    return datetime.now(UTC)


TOLERANT = {"tolerant": True}
"""Validation context of consumers: unknown fields are dropped at every nesting level."""


def _drop_unknown(model: type[BaseModel], data: Any, info: ValidationInfo) -> Any:
    if not (isinstance(data, dict) and info.context and info.context.get("tolerant")):
        return data
    known = set(model.model_fields)
    known |= {f.alias for f in model.model_fields.values() if f.alias}
    return {k: v for k, v in data.items() if k in known}


class Payload(BaseModel):
    """Base of nested payload models: frozen; producers are strict on unknown fields,
    consumers (validating with the ``TOLERANT`` context) ignore them, so a field added by a
    newer producer never breaks an older reader."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _tolerant_reader(cls, data: Any, info: ValidationInfo) -> Any:
        return _drop_unknown(cls, data, info)


class ClaimCheck(Payload):
    """A pointer to a large payload kept in the artifact store."""

    uri: str = Field(description="Artifact URI (file path or fsspec URL).")
    sha256: str = Field(
        pattern=r"^[0-9a-f]{64}$", description="sha256 of the artifact bytes, 64 lowercase hex."
    )
    size: int = Field(ge=0, description="Size of the artifact in bytes.")
    media_type: str = Field("application/jsonl", description="Format of the artifact.")


class Authority(Payload):
    """Who issued a command, and their Ed25519 signature over the event (shared/authority.py).

    Optional on every event; command topics require it (``LLMOPS_REQUIRE_AUTHORITY``)."""

    principal: str = Field(description="Who signed: `admin`, a user, or `service:<name>`.")
    role: str = Field(description="Role of the principal, as registered: admin, operator, service.")
    key_id: str = Field(description="Id of the signing key: 16 hex of sha256(public key).")
    issued_at: datetime | None = Field(
        None, description="When it was signed (UTC); a command dated in the future is refused."
    )
    expires_at: datetime | None = Field(
        None,
        description="Signed expiry (UTC): refused after it, or if it lies further after "
        "`issued_at` than LLMOPS_AUTHORITY_MAX_AGE_S.",
    )
    signature: str = Field(
        "", description="Ed25519 signature (base64url) over the canonical event bytes."
    )


class Event(BaseModel):
    """Envelope shared by every event.

    Subclasses set ``EVENT_TYPE`` and ``SCHEMA_VERSION`` (done by ``@register``); the
    serialized ``event_type``/``schema_version`` fields are filled from them.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    EVENT_TYPE: ClassVar[str] = ""
    SCHEMA_VERSION: ClassVar[int] = 1

    event_id: uuid.UUID = Field(
        default_factory=uuid.uuid4, description="Unique id of this event; the idempotency key."
    )
    event_type: str = Field("", description="Type name, e.g. `llmops.records.ingested`.")
    schema_version: int = Field(0, description="Version of this event type's schema.")
    occurred_at: datetime = Field(default_factory=utcnow, description="When it happened (UTC).")
    producer: str = Field("unknown", description="Service or client that produced the event.")
    correlation_id: uuid.UUID = Field(
        default_factory=uuid.uuid4,
        description="One id for a whole loop run (ingest to promotion).",
    )
    causation_id: uuid.UUID | None = Field(
        None, description="event_id of the event that caused this one."
    )
    authority: Authority | None = Field(
        None, description="Principal and signature of a command; absent on facts."
    )

    @model_validator(mode="before")
    @classmethod
    def _fill_type(cls, data: Any) -> Any:
        if isinstance(data, dict) and cls.EVENT_TYPE:
            data = dict(data)
            given_type = data.get("event_type") or cls.EVENT_TYPE
            if given_type != cls.EVENT_TYPE:
                raise ValueError(f"event_type {given_type!r} is not {cls.EVENT_TYPE!r}")
            given_version = data.get("schema_version") or cls.SCHEMA_VERSION
            if given_version != cls.SCHEMA_VERSION:
                raise ValueError(
                    f"schema_version {given_version} of {cls.EVENT_TYPE} is not "
                    f"{cls.SCHEMA_VERSION}; decode it through the registry to upcast"
                )
            data["event_type"] = given_type
            data["schema_version"] = given_version
        return data

    def caused(self, event_cls: type[Self] | type[Event], /, **fields: Any) -> Any:
        """Build an event caused by this one: same correlation id, causation = this id."""
        fields.setdefault("correlation_id", self.correlation_id)
        fields.setdefault("causation_id", self.event_id)
        return event_cls(**fields)

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()
