"""Who is calling: the platform admin key, or an annotator key this service issued.

Annotator keys are stored as sha256 hashes (high-entropy random keys: no salt needed); a
shared key registry replaces this once the security work lands. The key comes from
``Authorization: Bearer``, ``X-API-Key`` or the UI's session cookie.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from services.labeling.adapters.store import AnnotatorRow

COOKIE = "llmops_labeling_key"
ROLES = ("annotator", "admin")


@dataclass(frozen=True)
class Principal:
    name: str
    role: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class KeyRing:
    def __init__(self, engine: Engine, admin_key: Callable[[], str | None]) -> None:
        self.engine = engine
        self.admin_key = admin_key

    def resolve(self, key: str | None) -> Principal | None:
        if not key:
            return None
        admin = self.admin_key()
        if admin and hmac.compare_digest(key.encode(), admin.encode()):
            return Principal("admin", "admin")
        with Session(self.engine) as session:
            row = session.exec(
                select(AnnotatorRow).where(AnnotatorRow.key_hash == key_hash(key))
            ).first()
        if row is None or row.revoked:
            return None
        return Principal(row.name, row.role)

    def issue(self, session: Session, name: str, role: str = "annotator") -> str:
        """A new key for ``name`` (replacing any earlier one); only its hash is stored."""
        if role not in ROLES:
            raise ValueError(f"role {role!r} is not one of {ROLES}")
        key = "lbl-" + secrets.token_urlsafe(24)
        row = session.get(AnnotatorRow, name) or AnnotatorRow(name=name, key_hash="")
        row.key_hash, row.role, row.revoked = key_hash(key), role, False
        session.add(row)
        return key
