"""The model registry: versions with lineage, aliases with history, the one owner of promotion.

Every change goes through here and emits its events in the caller's unit of work: promotion
(``ModelPromoted``), rollback (``ModelRolledBack``), and an ``AuditRecorded`` for each.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

from services.evaluation.adapters.store import AliasHistoryRow, ModelVersionRow, now
from services.evaluation.ports import RegistryStore
from shared.events import (
    AuditRecorded,
    ClaimCheck,
    Event,
    ModelPromoted,
    ModelRolledBack,
    ModelTrained,
)

CHAMPION, CHALLENGER, STAGING = "champion", "challenger", "staging"
PROMOTABLE = {
    "registered",
    "passed",
    "awaiting-approval",
    "blocked",
    "served",
    "retired",
    "promoted",
    "external",
}


class RegistryError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


Emit = Callable[[Event], Event]


class Registry:
    def __init__(self, store: RegistryStore, emit: Emit, producer: str = "evaluation") -> None:
        self.store = store
        self.emit = emit
        self.producer = producer

    # -- versions ----------------------------------------------------------------------
    def register_trained(self, event: ModelTrained) -> ModelVersionRow | None:
        """A new version to evaluate (None when it was registered already: a redelivery)."""
        if self.store.version(event.model_name, event.model_version) is not None:
            return None
        row = ModelVersionRow(
            name=event.model_name,
            version=event.model_version,
            status="queued",
            source="trained",
            artifact_json=event.artifact.model_dump_json(),
            run_id=str(event.run_id),
            dataset=event.dataset,
            dataset_version=event.dataset_version,
            train_metrics_json=json.dumps(event.metrics),
            correlation_id=str(event.correlation_id) if event.correlation_id else None,
        )
        self.store.add(row)
        self._alias(row.name, STAGING, row.version, "register", "training", "trained")
        return row

    def register_manual(
        self,
        name: str,
        version: str,
        artifact: ClaimCheck,
        actor: str,
        *,
        dataset: str | None = None,
        dataset_version: str | None = None,
    ) -> ModelVersionRow:
        """A model directory registered by hand: queued for evaluation when a dataset version
        is named, else ``registered`` (an admin may promote it without gates)."""
        if self.store.version(name, version) is not None:
            raise RegistryError(409, f"{name} {version} is registered already")
        row = ModelVersionRow(
            name=name,
            version=version,
            status="queued" if dataset_version else "registered",
            source="manual",
            artifact_json=artifact.model_dump_json(),
            dataset=dataset,
            dataset_version=dataset_version,
        )
        self.store.add(row)
        self._audit("register", actor, f"model:{name}@{version}", {"uri": artifact.uri})
        return row

    def observe_served(self, name: str, version: str) -> bool:
        """A worker serves ``name`` while the registry knows no champion: that is the champion
        (the bootstrap model serving starts with). True when it was recorded now."""
        if self.store.alias(name, CHAMPION) is not None:
            return False
        if self.store.version(name, version) is None:
            self.store.add(
                ModelVersionRow(name=name, version=version, status="served", source="served")
            )
        self._alias(name, CHAMPION, version, "served", "serving", "seen serving first")
        return True

    def observe_external(self, event: ModelPromoted | ModelRolledBack) -> None:
        """A promotion or rollback published by someone else: keep the registry true."""
        if isinstance(event, ModelPromoted):
            name, version = event.model_name, event.model_version
            if self.store.version(name, version) is None:
                artifact = event.artifact.model_dump_json() if event.artifact else None
                self.store.add(
                    ModelVersionRow(
                        name=name,
                        version=version,
                        status="promoted",
                        source="external",
                        artifact_json=artifact,
                    )
                )
            self._alias(name, event.alias, version, "external", event.actor, "published outside")
        else:
            self._alias(
                event.model_name, CHAMPION, event.to_version, "rollback", event.actor, event.reason
            )

    # -- promotion ---------------------------------------------------------------------
    def promote(
        self,
        name: str,
        version: str,
        actor: str,
        *,
        canary: float | None = None,
        reason: str = "manual",
        action: str = "promote",
    ) -> ModelPromoted:
        row = self._version(name, version)
        current = self.store.alias(name, CHAMPION)
        if canary is None and current is not None and current.version == version:
            raise RegistryError(409, f"{name} {version} is already the champion")
        if row.status not in PROMOTABLE:
            raise RegistryError(409, f"{name} {version} is {row.status}: not promotable yet")
        if row.artifact_json is None and row.source != "served":
            raise RegistryError(409, f"{name} {version} has no weights to serve")
        alias = CHAMPION if canary is None else CHALLENGER
        event = ModelPromoted(
            model_name=name,
            model_version=version,
            artifact=ClaimCheck.model_validate_json(row.artifact_json)
            if row.artifact_json
            else None,
            alias=alias,
            traffic_share=1.0 if canary is None else canary,
            previous_version=current.version if current else None,
            actor=actor,
            producer=self.producer,
            **correlated(row.correlation_id),
        )
        self.emit(event)
        if canary is None:
            row.status = "promoted"
            self.store.add(row)
            if (staging := self.store.alias(name, STAGING)) and staging.version == version:
                self._alias(name, STAGING, None, action, actor, "promoted")
            if (chal := self.store.alias(name, CHALLENGER)) and chal.version == version:
                self._alias(name, CHALLENGER, None, action, actor, "promoted")
        self._alias(name, alias, version, action, actor, reason, share=event.traffic_share)
        self._audit(
            action,
            actor,
            f"model:{name}@{version}",
            {"alias": alias, "previous": event.previous_version, "reason": reason},
        )
        return event

    def approve(self, name: str, version: str, actor: str) -> ModelPromoted:
        row = self._version(name, version)
        if row.status != "awaiting-approval":
            raise RegistryError(409, f"{name} {version} is {row.status}, not awaiting approval")
        return self.promote(name, version, actor, reason="approved", action="approve")

    def rollback(
        self, name: str, actor: str, to: str | None = None, reason: str = "manual"
    ) -> ModelRolledBack:
        current = self.store.alias(name, CHAMPION)
        if current is None:
            raise RegistryError(404, f"{name} has no champion to roll back")
        chain = self.champion_chain(name)
        target = to or next((v for v in reversed(chain[:-1]) if v != current.version), None)
        if target is None:
            raise RegistryError(409, f"{name} has no previous champion to return to")
        if target == current.version:
            raise RegistryError(409, f"{name} {target} is already the champion")
        self._version(name, target)
        event = ModelRolledBack(
            model_name=name,
            from_version=current.version,
            to_version=target,
            reason=reason,
            actor=actor,
            producer=self.producer,
        )
        self.emit(event)
        withdrawn = self.store.version(name, current.version)
        if withdrawn is not None:
            withdrawn.status = "retired"
            self.store.add(withdrawn)
        self._alias(name, CHAMPION, target, "rollback", actor, reason)
        self._audit(
            "rollback", actor, f"model:{name}@{target}", {"from": current.version, "reason": reason}
        )
        return event

    def champion_chain(self, name: str) -> list[str]:
        """Champions in order, a rollback popping the one it withdrew."""
        chain: list[str] = []
        for entry in self.store.history(name):
            if entry.alias != CHAMPION or entry.version is None:
                continue
            if entry.action == "rollback":
                while chain and chain[-1] != entry.version:
                    chain.pop()
                if not chain:
                    chain.append(entry.version)
            else:
                chain.append(entry.version)
        return chain

    # -- helpers -----------------------------------------------------------------------
    def _version(self, name: str, version: str) -> ModelVersionRow:
        row = self.store.version(name, version)
        if row is None:
            known = ", ".join(r.version for r in self.store.versions(name)) or "none"
            raise RegistryError(404, f"no version {version!r} of {name!r} (known: {known})")
        return row

    def _alias(  # noqa: PLR0917 (one history row: every column is an argument)
        self,
        name: str,
        alias: str,
        version: str | None,
        action: str,
        actor: str,
        reason: str,
        share: float = 1.0,
    ) -> None:
        before = self.store.alias(name, alias)
        self.store.set_alias(name, alias, version, share)
        self.store.add(
            AliasHistoryRow(
                name=name,
                alias=alias,
                version=version,
                previous=before.version if before else None,
                action=action,
                actor=actor,
                reason=reason,
                at=now(),
            )
        )

    def _audit(self, action: str, actor: str, target: str, details: dict[str, Any]) -> None:
        self.emit(
            AuditRecorded(
                action=action,
                actor=actor,
                allowed=True,
                target=target,
                details=details,
                producer=self.producer,
            )
        )


def correlated(correlation_id: str | None) -> dict[str, Any]:
    """Keep the loop's correlation id (from ModelTrained) on what the evaluation causes."""
    return {"correlation_id": uuid.UUID(correlation_id)} if correlation_id else {}
