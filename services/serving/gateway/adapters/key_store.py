"""API keys in the gateway's database, the issuer's record of the registry: only their
sha256 is stored. Every change is also published to the registry topic (``KeyAdmin``), and
the whole store again at each start (``records``), so the topic can be rebuilt from here."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, Session, SQLModel, select

from services.serving.gateway.keys import KeyInfo, Role, hash_key, key_id_of
from shared.events import ApiKeyChanged
from shared.keys import KeyRegistry, changed


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
    public_key: str = Field(default="", max_length=43)  # the holder's Ed25519 signing key, if any
    expires_at: datetime | None = None


def _info(row: ApiKey) -> KeyInfo:
    return KeyInfo(
        key_id=row.key_id,
        name=row.name,
        role=Role(row.role),
        rpm=row.rpm,
        tpm=row.tpm,
        expires_at=_utc(row.expires_at),
    )


def _utc(value: datetime | None) -> datetime | None:
    """SQLite gives naive datetimes back: they were written in UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def _record(row: ApiKey) -> ApiKeyChanged:
    return changed(
        row.key_hash,
        row.name,
        row.role,
        row.rpm,
        row.tpm,
        revoked=row.revoked_at is not None,
        hashed=True,
        public_key=row.public_key,
        expires_at=_utc(row.expires_at),
    )


class SqlKeyStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def add(
        self,
        secret: str,
        name: str,
        role: Role,
        rpm: int,
        tpm: int,
        *,
        public_key: str = "",
        expires_at: datetime | None = None,
    ) -> KeyInfo:
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
            row.public_key, row.expires_at = public_key, expires_at
            session.add(row)
            session.commit()
            session.refresh(row)
            return _info(row)

    def ensure(self, key_hash: str, name: str, role: Role, rpm: int, tpm: int) -> bool:
        """Store a key by its sha256 unless it is there already (a revoked key stays
        revoked: the root key is ensured at each start and must not come back that way).
        True if added. The gateway needs only the root key's hash for this. Gateway processes
        sharing one database all ensure it at start: the one that loses the race to insert it
        finds it there (False), like one that started later."""
        with Session(self.engine) as session:
            if session.get(ApiKey, key_hash) is not None:
                return False
            session.add(
                ApiKey(
                    key_hash=key_hash, key_id=key_hash[:12], name=name, role=role, rpm=rpm, tpm=tpm
                )
            )
            try:
                session.commit()
            except IntegrityError:
                return False
        return True

    def records(self) -> list[ApiKeyChanged]:
        """Every key's registry record (revoked ones included), oldest first."""
        with Session(self.engine) as session:
            rows = session.exec(select(ApiKey).order_by(ApiKey.created_at)).all()  # type: ignore[arg-type]
            return [_record(r) for r in rows]

    def record(self, key_id: str) -> ApiKeyChanged | None:
        with Session(self.engine) as session:
            row = session.exec(select(ApiKey).where(ApiKey.key_id == key_id)).first()
            return None if row is None else _record(row)

    def public_key_taken(self, public_key: str) -> bool:
        """Whether a key was already registered with this signing key (each signs for one)."""
        with Session(self.engine) as session:
            return (
                session.exec(select(ApiKey).where(ApiKey.public_key == public_key)).first()
                is not None
            )

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


class RegistryLookup:
    """The gateway's key lookup: the platform's key registry (shared/keys.py), the same
    view every other API checks, so a key revoked anywhere is refused here too."""

    def __init__(self, registry: KeyRegistry) -> None:
        self.registry = registry

    def lookup(self, secret: str) -> KeyInfo | None:
        principal = self.registry.resolve(secret)
        return None if principal is None else KeyInfo.of(principal)

    def expired(self, secret: str) -> datetime | None:
        """When the key expired, if it is an issued key that has (a 401 that says so)."""
        return self.registry.view.expired(secret)
