"""The key-admin use case: create, list and revoke API keys, each change audited."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from services.serving.gateway.config import GatewaySettings
from services.serving.gateway.keys import Action, Role, new_secret
from services.serving.gateway.ports import KeyStore, Publisher
from services.serving.gateway.protocol import APIError, KeyCreateRequest
from services.serving.gateway.serving import Gateway
from shared.events import AuditRecorded


@dataclass
class KeyAdmin:
    gateway: Gateway  # authenticates the caller (same keys, same cache)
    store: KeyStore
    publisher: Publisher
    settings: GatewaySettings

    async def create(self, authorization: str | None, body: KeyCreateRequest) -> dict[str, Any]:
        admin = self.gateway.authenticate(authorization, Action.MANAGE_KEYS)
        try:
            role = Role(body.role)
        except ValueError:
            raise APIError(
                400, f"role must be one of {[r.value for r in Role]}", param="role"
            ) from None
        secret = new_secret()
        info = self.store.add(
            secret,
            body.name,
            role,
            body.rpm or self.settings.default_rpm,
            body.tpm or self.settings.default_tpm,
        )
        await self.publisher.publish(
            AuditRecorded(
                action="key.create",
                actor=admin.key_id,
                allowed=True,
                target=info.key_id,
                details={"role": role.value},
            )
        )
        return {
            "key": secret,
            "key_id": info.key_id,
            "name": info.name,
            "role": role.value,
            "rpm": info.rpm,
            "tpm": info.tpm,
        }

    def list(self, authorization: str | None) -> dict[str, Any]:
        self.gateway.authenticate(authorization, Action.MANAGE_KEYS)
        return {
            "data": [
                {
                    "key_id": k.key_id,
                    "name": k.name,
                    "role": k.role.value,
                    "rpm": k.rpm,
                    "tpm": k.tpm,
                    "created_at": created.isoformat(),
                    "revoked": revoked,
                }
                for k, created, revoked in self.store.list()
            ]
        }

    async def revoke(self, authorization: str | None, key_id: str) -> dict[str, Any]:
        admin = self.gateway.authenticate(authorization, Action.MANAGE_KEYS)
        if not self.store.revoke(key_id):
            raise APIError(404, f"No key {key_id}.", code="not_found")
        await self.publisher.publish(
            AuditRecorded(action="key.revoke", actor=admin.key_id, allowed=True, target=key_id)
        )
        return {"key_id": key_id, "revoked": True}
