"""The key-admin use case: create, list and revoke API keys, each change audited.

The gateway is the issuer of the platform's one key registry (shared/keys.py): a change goes
to its store, to its own view at once, and to the registry topic as a signed
``ApiKeyChanged`` that every other service's view applies within a fetch."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from services.serving.gateway.config import GatewaySettings
from services.serving.gateway.keys import Action, KeyInfo, Role, new_secret
from services.serving.gateway.ports import KeyStore, Publisher
from services.serving.gateway.protocol import APIError, KeyCreateRequest
from services.serving.gateway.serving import Gateway
from shared.authority import user_principal
from shared.events import ApiKeyChanged, AuditRecorded
from shared.keys import KeyView, changed, signing_key_id


@dataclass
class KeyAdmin:
    gateway: Gateway  # authenticates the caller (same keys, same cache)
    store: KeyStore
    publisher: Publisher
    settings: GatewaySettings
    view: KeyView | None = None  # this gateway's registry view: changes apply here at once

    async def announce(self, record: ApiKeyChanged) -> None:
        """Apply a key's record to this gateway's view and publish it to the registry."""
        if self.view is not None:
            self.view.apply(record)
        await self.publisher.publish(record)

    async def republish(self) -> int:
        """Every stored key's record again (at start: the registry topic may have been lost
        with an in-memory broker; records are states, so repeating them is harmless)."""
        records = self.store.records()
        for record in records:
            await self.announce(record)
        return len(records)

    async def reassert(self, record: ApiKeyChanged) -> bool:
        """A record on the registry topic that says a key this gateway revoked is live (an
        old, signed record replayed onto the topic: compaction could keep it as the key's
        latest state for views that start later) is answered with the revocation again."""
        if record.revoked:
            return False
        stored = self.store.record(record.key_id)
        if stored is None or not stored.revoked:
            return False
        await self.announce(stored)
        return True

    async def create(self, authorization: str | None, body: KeyCreateRequest) -> dict[str, Any]:
        admin = self.gateway.authenticate(authorization, Action.MANAGE_KEYS)
        try:
            role = Role(body.role)
        except ValueError:
            raise APIError(
                400, f"role must be one of {[r.value for r in Role]}", param="role"
            ) from None
        public_key = body.public_key or ""
        if public_key and (
            signing_key_id(public_key) is None or self.store.public_key_taken(public_key)
        ):
            raise APIError(
                400,
                "public_key must be a new Ed25519 public key (base64url of 32 bytes), one "
                "per API key",
                param="public_key",
            )
        lifetime = (
            body.expires_in_s
            if body.expires_in_s is not None
            else self.settings.key_default_expires_in_s
        )
        expires_at = (
            datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=lifetime)
            if lifetime
            else None
        )
        secret = new_secret()
        info = self.store.add(
            secret,
            body.name,
            role,
            body.rpm or self.settings.default_rpm,
            body.tpm or self.settings.default_tpm,
            public_key=public_key,
            expires_at=expires_at,
        )
        await self.announce(
            changed(
                secret,
                info.name,
                role.value,
                info.rpm,
                info.tpm,
                actor=admin.key_id,
                public_key=public_key,
                expires_at=expires_at,
            )
        )
        details: dict[str, Any] = {"role": role.value}
        if public_key:
            details["signing_key_id"] = signing_key_id(public_key)
        if expires_at is not None:
            details["expires_at"] = expires_at.isoformat()
        await self.publisher.publish(
            AuditRecorded(
                action="key.create",
                actor=admin.key_id,
                allowed=True,
                target=info.key_id,
                details=details,
            )
        )
        return {
            "key": secret,
            "key_id": info.key_id,
            "name": info.name,
            "role": role.value,
            "rpm": info.rpm,
            "tpm": info.tpm,
            "expires_at": expires_at.isoformat() if expires_at else None,
            "principal": user_principal(info.name) if public_key else None,
            "signing_key_id": signing_key_id(public_key) if public_key else None,
        }

    def list(self, authorization: str | None) -> dict[str, Any]:
        self.gateway.authenticate(authorization, Action.MANAGE_KEYS)
        now = datetime.now(UTC)
        return {
            "data": [
                {
                    "key_id": k.key_id,
                    "name": k.name,
                    "role": k.role.value,
                    "rpm": k.rpm,
                    "tpm": k.tpm,
                    "created_at": created.isoformat(),
                    "expires_at": k.expires_at.isoformat() if k.expires_at else None,
                    "expired": k.expired(now),
                    "revoked": revoked,
                }
                for k, created, revoked in self.store.list()
            ]
        }

    async def revoke(self, authorization: str | None, key_id: str) -> dict[str, Any]:
        admin: KeyInfo = self.gateway.authenticate(authorization, Action.MANAGE_KEYS)
        if not self.store.revoke(key_id):
            raise APIError(404, f"No key {key_id}.", code="not_found")
        record = self.store.record(key_id)
        if record is not None:
            await self.announce(record.model_copy(update={"revoked": True, "actor": admin.key_id}))
        self.gateway.forget_keys()  # this gateway's key cache: refused from the next request
        await self.publisher.publish(
            AuditRecorded(action="key.revoke", actor=admin.key_id, allowed=True, target=key_id)
        )
        return {"key_id": key_id, "revoked": True}
