"""API keys in the gateway's database: only their sha256 is stored."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.engine import Engine
from sqlmodel import Field, Session, SQLModel, select

from services.serving.gateway.keys import KeyInfo, Role, hash_key, key_id_of


class ApiKey(SQLModel, table=True):
    __tablename__ = "gateway_api_keys"

    key_hash: str = Field(primary_key=True, max_length=64)
    key_id: str = Field(index=True, max_length=12)
    name: str = Field(max_length=100)
    role: str = Field(max_length=20)
    rpm: int
    tpm: int
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    revoked_at: datetime | None = None


def _info(row: ApiKey) -> KeyInfo:
    return KeyInfo(key_id=row.key_id, name=row.name, role=Role(row.role), rpm=row.rpm, tpm=row.tpm)


class SqlKeyStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def add(self, secret: str, name: str, role: Role, rpm: int, tpm: int) -> KeyInfo:
        """Store a key (idempotent for the same secret: an existing row is updated)."""
        with Session(self.engine) as session:
            row = session.get(ApiKey, hash_key(secret)) or ApiKey(
                key_hash=hash_key(secret),
                key_id=key_id_of(secret),
                name=name,
                role=role,
                rpm=rpm,
                tpm=tpm,
            )
            row.name, row.role, row.rpm, row.tpm, row.revoked_at = name, role, rpm, tpm, None
            session.add(row)
            session.commit()
            session.refresh(row)
            return _info(row)

    def lookup(self, secret: str) -> KeyInfo | None:
        with Session(self.engine) as session:
            row = session.get(ApiKey, hash_key(secret))
            return None if row is None or row.revoked_at is not None else _info(row)

    def list(self) -> list[tuple[KeyInfo, datetime, bool]]:
        with Session(self.engine) as session:
            rows = session.exec(select(ApiKey).order_by(ApiKey.created_at)).all()  # type: ignore[arg-type]
            return [(_info(r), r.created_at, r.revoked_at is not None) for r in rows]

    def revoke(self, key_id: str) -> bool:
        with Session(self.engine) as session:
            rows = session.exec(select(ApiKey).where(ApiKey.key_id == key_id)).all()
            for row in rows:
                row.revoked_at = datetime.now(UTC)
                session.add(row)
            session.commit()
            return bool(rows)
