"""Who is calling: a key of the platform's one registry (shared/keys.py; the gateway's
keys, ``llmops keys create NAME --role annotator``) of role annotator or above, or an
annotator key this service issued itself (``llmops label annotators add``).

Registry keys: viewer and user keys are refused, annotator keys label, operator and admin
keys also manage projects, adjudicate and issue annotator keys; the root admin key is one of
them, and a key revoked in the registry is refused here within a fetch. This service's own
annotator keys are stored as sha256 hashes (high-entropy random keys: no salt needed). The
key comes from ``Authorization: Bearer``, ``X-API-Key`` or the UI's session cookie.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from services.labeling.adapters.store import AnnotatorRow
from shared.keys import KeyRegistry, at_least

COOKIE = "llmops_labeling_key"
ROLES = ("annotator", "admin")  # of the keys this service issues
LEAST_ROLE = "annotator"  # of a registry key to use the UI and API
ADMIN_ROLE = "operator"  # of a registry key to manage projects, adjudicate, issue keys


@dataclass(frozen=True)
class Principal:
    name: str
    role: str

    @property
    def is_admin(self) -> bool:
        return at_least(self.role, ADMIN_ROLE)


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class KeyRing:
    def __init__(self, engine: Engine, registry: KeyRegistry) -> None:
        self.engine = engine
        self.registry = registry

    def resolve(self, key: str | None) -> Principal | None:
        if not key:
            return None
        issued = self.registry.resolve(key)
        if issued is not None:
            if not issued.at_least(LEAST_ROLE):
                return None
            return Principal("admin" if issued.root else issued.name, issued.role)
        if key_hash(key)[:12] in self.registry.view.revoked:
            return None
        with Session(self.engine) as session:
            row = session.exec(
                select(AnnotatorRow).where(AnnotatorRow.key_hash == key_hash(key))
            ).first()
        if row is None or row.revoked:
            return None
        return Principal(row.name, row.role)

    def too_low(self, key: str | None) -> bool:
        """Whether ``key`` is a live registry key whose role is below annotator (403, not
        401: it is known, it just may not label)."""
        issued = self.registry.resolve(key) if key else None
        return issued is not None and not issued.at_least(LEAST_ROLE)

    def issue(self, session: Session, name: str, role: str = "annotator") -> str:
        """A new key for ``name`` (replacing any earlier one); only its hash is stored."""
        if role not in ROLES:
            raise ValueError(f"role {role!r} is not one of {ROLES}")
        key = "lbl-" + secrets.token_urlsafe(24)
        row = session.get(AnnotatorRow, name) or AnnotatorRow(name=name, key_hash="")
        row.key_hash, row.role, row.revoked = key_hash(key), role, False
        session.add(row)
        return key
