"""Verifiable authority for commands on the bus: Ed25519 signatures, principals, policy.

Root of trust: the admin key (``ServiceSettings.admin_secret()``). From it HKDF derives

* the admin signing key (label ``admin``): the CLI and the SDK sign with it;
* one signing key per service (label ``service:<plug-in name>``), handed by ``llmops up`` to
  that service's processes only (``LLMOPS_AUTHORITY_KEY``); services never get the admin key
  from the supervisor.

``llmops up`` writes the admin PUBLIC key to ``<data_dir>/authority.pub`` and a registry of
principals (public key, role, the commands a service may issue) to
``<data_dir>/authority.json``, signed by the admin key. Consumers of command topics verify
each command against that registry (``Verifier``); the bus dead-letters what fails with
reason ``unauthorized``.

The signed bytes are the event's JSON with ``authority.signature`` left out, keys sorted,
no whitespace (``canonical``); any producer can reproduce them. They include the
authority's ``issued_at`` and ``expires_at``: a command is valid for a bounded time
(``LLMOPS_AUTHORITY_MAX_AGE_S``), and consumers that are not idempotent (the serving
workers' inference requests) also refuse an ``event_id`` they saw within that time
(``ReplayGuard``).
"""

from __future__ import annotations

import base64
import hashlib
import heapq
import json
import logging
import os
import stat
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from shared.events import (
    ApiKeyChanged,
    ErasureRequested,
    Event,
    InferenceRequested,
    IngestRequested,
    LabelingProjectRequested,
    ModelPromoted,
    ModelRolledBack,
    TrainingRequested,
)
from shared.events.envelope import Authority
from shared.settings import ServiceSettings

log = logging.getLogger(__name__)

ADMIN = "admin"
SERVICE_ROLE = "service"
USER_PREFIX = "user:"
_HKDF_SALT = b"llmops/authority/v1"

COMMANDS: dict[str, frozenset[str]] = {
    IngestRequested.EVENT_TYPE: frozenset({"admin", "operator"}),
    ErasureRequested.EVENT_TYPE: frozenset({"admin"}),
    TrainingRequested.EVENT_TYPE: frozenset({"admin", "operator"}),
    ModelPromoted.EVENT_TYPE: frozenset({"admin"}),
    ModelRolledBack.EVENT_TYPE: frozenset({"admin"}),
    InferenceRequested.EVENT_TYPE: frozenset({"admin"}),
    ApiKeyChanged.EVENT_TYPE: frozenset({"admin"}),  # a key fact, signed like a command
    LabelingProjectRequested.EVENT_TYPE: frozenset({"admin", "operator"}),
}
"""Command event type -> roles of people allowed to issue it: the admin principal, and users
signing with their own key (``user:<name>``, the role of their API key: shared/keys.py's
roles). Service principals (role ``service``) may issue exactly the commands their registry
entry grants: what their plug-in declares it produces (e.g. monitoring: training requests;
evaluation: promotions and rollbacks; serving: inference requests and the API key registry's
records; anonymization: erasures from its admin API; labeling: project changes from its HTTP
API)."""

NOT_FOR_USERS: frozenset[str] = frozenset({ApiKeyChanged.EVENT_TYPE})
"""Commands a user key never issues, whatever its role: the key registry's own records (the
registry that vouches for user keys is published by the admin and the key issuer only)."""


LOG_OF_RECORD: frozenset[str] = frozenset(
    {ModelPromoted.EVENT_TYPE, ModelRolledBack.EVENT_TYPE, ApiKeyChanged.EVENT_TYPE}
)
"""Commands whose topic is also the log of record: a consumer that joins later (a new serving
worker, its own consumer group; every service's API key view, at each start) rebuilds its
state from their whole history, so they are checked like any command but do not expire.
Replays of them are absorbed by the consumers' inboxes (the same ``event_id`` applies once),
or are harmless (an API key record is a state, and a revocation sticks: shared/keys.py)."""


def is_command(event_type: str) -> bool:
    return event_type in COMMANDS


def service_principal(name: str) -> str:
    return f"service:{name}"


def user_principal(name: str) -> str:
    """The principal of a user key: ``user:<the API key's name>``."""
    return f"{USER_PREFIX}{name}"


# -- keys --------------------------------------------------------------------------------
def derive_key(secret: str, label: str) -> Ed25519PrivateKey:
    """A deterministic Ed25519 key: HKDF-SHA256(secret, info=label), domain-separated."""
    seed = HKDF(algorithm=hashes.SHA256(), length=32, salt=_HKDF_SALT, info=label.encode()).derive(
        secret.encode()
    )
    return Ed25519PrivateKey.from_private_bytes(seed)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def public_bytes(key: Ed25519PrivateKey | Ed25519PublicKey) -> bytes:
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes_raw()


def key_id(public: bytes) -> str:
    return hashlib.sha256(public).hexdigest()[:16]


def private_text(key: Ed25519PrivateKey) -> str:
    """The private key as one line (base64url of the 32-byte seed) for a setting."""
    return _b64(key.private_bytes_raw())


def canonical(payload: dict[str, Any]) -> bytes:
    """The bytes a signature covers: the event JSON without ``authority.signature``."""
    body = dict(payload)
    authority = body.get("authority")
    if isinstance(authority, dict):
        body["authority"] = {k: v for k, v in authority.items() if k != "signature"}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


# -- signing -----------------------------------------------------------------------------
DEFAULT_TTL_S = 3600


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Signer:
    principal: str
    role: str
    key: Ed25519PrivateKey = field(repr=False)
    ttl_s: int = DEFAULT_TTL_S  # expires_at - issued_at of what it signs

    @classmethod
    def admin(cls, secret: str, *, ttl_s: int = DEFAULT_TTL_S) -> Signer:
        return cls(ADMIN, ADMIN, derive_key(secret, ADMIN), ttl_s)

    @classmethod
    def from_text(
        cls, principal: str, role: str, key_text: str, *, ttl_s: int = DEFAULT_TTL_S
    ) -> Signer:
        key = Ed25519PrivateKey.from_private_bytes(_unb64(key_text))
        return cls(principal, role, key, ttl_s)

    @property
    def key_id(self) -> str:
        return key_id(public_bytes(self.key))

    def sign(self, event: Event, *, now: datetime | None = None) -> Event:
        """The event with this principal's authority, valid from ``now`` for ``ttl_s``."""
        issued = now or _utcnow()
        unsigned = Authority(
            principal=self.principal,
            role=self.role,
            key_id=self.key_id,
            issued_at=issued,
            expires_at=issued + timedelta(seconds=self.ttl_s),
        )
        event = event.model_copy(update={"authority": unsigned})
        signature = self.key.sign(canonical(event.model_dump(mode="json")))
        signed = unsigned.model_copy(update={"signature": _b64(signature)})
        return event.model_copy(update={"authority": signed})

    def sign_command(self, event: Event) -> Event:
        """Sign ``event`` if it is a command not signed yet; facts pass unchanged."""
        if event.authority is None and is_command(event.EVENT_TYPE):
            return self.sign(event)
        return event


def signer_for(settings: ServiceSettings, *, user: bool = False) -> Signer | None:
    """This process' signer: its own service key (``LLMOPS_AUTHORITY_KEY`` or the file
    ``LLMOPS_AUTHORITY_KEY_FILE``), or with ``user=True`` (the CLI and SDK) the user's own
    credential (``LLMOPS_CREDENTIALS``), else the admin key's."""
    ttl = settings.authority_max_age_s
    own_key = settings.authority_signing_key()
    if own_key and settings.authority_principal:
        return Signer.from_text(settings.authority_principal, SERVICE_ROLE, own_key, ttl_s=ttl)
    if user and settings.credentials is not None:
        return read_credential(settings.credentials).signer(ttl_s=ttl)
    if user and (secret := settings.admin_secret()):
        return Signer.admin(secret, ttl_s=ttl)
    return None


def api_key_for(settings: ServiceSettings) -> str | None:
    """The API key the CLI and SDK present to the platform's HTTP APIs: the user's own, from
    the credential file ``LLMOPS_CREDENTIALS`` names (``llmops keys create``), else the admin
    key (None without either). ``CredentialError`` if the file cannot be used: a named
    credential never silently falls back to the admin key."""
    if settings.credentials is not None:
        return read_credential(settings.credentials).api_key
    return settings.admin_secret()


# -- a user's credential file ---------------------------------------------------------------
class CredentialError(ValueError):
    """A credential file that cannot be used (missing, unreadable, too open, malformed)."""


@dataclass(frozen=True)
class Credential:
    """What ``llmops keys create`` hands a user: the API key and the Ed25519 signing key
    registered with it (its public half is on the key registry), in one file, mode 0600."""

    name: str
    role: str
    api_key: str = field(repr=False)
    key_id: str  # the API key's id (shared/keys.py)
    signing_key: str = field(repr=False)  # base64url of the Ed25519 seed
    expires_at: datetime | None = None
    gateway_url: str | None = None

    @property
    def principal(self) -> str:
        return user_principal(self.name)

    def signer(self, *, ttl_s: int = DEFAULT_TTL_S) -> Signer:
        return Signer.from_text(self.principal, self.role, self.signing_key, ttl_s=ttl_s)

    def to_json(self) -> dict[str, Any]:
        return {
            "principal": self.principal,
            "name": self.name,
            "role": self.role,
            "api_key": self.api_key,
            "key_id": self.key_id,
            "signing_key": self.signing_key,
            "signing_key_id": self.signer().key_id,
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
            "gateway_url": self.gateway_url,
        }


def new_signing_key() -> tuple[str, str]:
    """A fresh Ed25519 key pair: (private key text, public key base64url)."""
    key = Ed25519PrivateKey.generate()
    return private_text(key), _b64(public_bytes(key))


def write_credential(path: Path, credential: Credential) -> Path:
    """Write ``credential`` to ``path`` readable by its owner only (0600, its folder 0700
    when created here); an existing file is not overwritten."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(json.dumps(credential.to_json(), indent=1) + "\n")
    return path


def read_credential(path: Path) -> Credential:
    """A credential file; refused if others may read it (like ssh's private keys)."""
    try:
        mode = path.stat().st_mode
        document = json.loads(path.read_text())
    except OSError as exc:
        raise CredentialError(f"cannot read the credential file {path}: {exc}") from None
    except ValueError:
        raise CredentialError(f"the credential file {path} is not JSON") from None
    if os.name == "posix" and mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise CredentialError(
            f"the credential file {path} is accessible by others "
            f"(mode {stat.S_IMODE(mode):o}); chmod 600 it"
        )
    try:
        expires = document.get("expires_at")
        credential = Credential(
            name=str(document["name"]),
            role=str(document["role"]),
            api_key=str(document["api_key"]),
            key_id=str(document["key_id"]),
            signing_key=str(document["signing_key"]),
            expires_at=datetime.fromisoformat(expires) if expires else None,
            gateway_url=document.get("gateway_url"),
        )
        credential.signer()  # the key must load
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CredentialError(
            f"the credential file {path} is malformed ({type(exc).__name__})"
        ) from None
    return credential


# -- the registry of principals ------------------------------------------------------------
@dataclass(frozen=True)
class Principal:
    public_key: bytes
    role: str
    grants: frozenset[str] = frozenset()


class RegistryError(ValueError):
    pass


def issue_registry(secret: str, principals: dict[str, Principal]) -> dict[str, Any]:
    """The registry document, signed by the admin key."""
    body = {
        "principals": {
            name: {"public_key": _b64(p.public_key), "role": p.role, "grants": sorted(p.grants)}
            for name, p in sorted(principals.items())
        }
    }
    admin = derive_key(secret, ADMIN)
    return {**body, "signature": _b64(admin.sign(canonical(body)))}


def read_registry(document: dict[str, Any], admin_public: bytes) -> dict[str, Principal]:
    """Principals of a registry document whose admin signature checks out."""
    body = {k: v for k, v in document.items() if k != "signature"}
    try:
        Ed25519PublicKey.from_public_bytes(admin_public).verify(
            _unb64(str(document.get("signature", ""))), canonical(body)
        )
        return {
            name: Principal(_unb64(p["public_key"]), str(p["role"]), frozenset(p["grants"]))
            for name, p in body["principals"].items()
        }
    except (InvalidSignature, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise RegistryError(
            f"the principal registry is not signed by the admin key ({type(exc).__name__})"
        ) from None


def provision(secret: str, data_dir: Path, service_grants: dict[str, set[str]]) -> dict[str, str]:
    """Write ``authority.pub`` and the signed ``authority.json`` under ``data_dir``; return
    each service's private key text (its ``LLMOPS_AUTHORITY_KEY``)."""
    principals = {ADMIN: Principal(public_bytes(derive_key(secret, ADMIN)), ADMIN)}
    keys: dict[str, str] = {}
    for name, grants in service_grants.items():
        key = derive_key(secret, service_principal(name))
        principals[service_principal(name)] = Principal(
            public_bytes(key), SERVICE_ROLE, frozenset(grants)
        )
        keys[name] = private_text(key)
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "authority.pub").write_text(_b64(principals[ADMIN].public_key) + "\n")
    registry = issue_registry(secret, principals)
    (data_dir / "authority.json").write_text(json.dumps(registry, indent=1) + "\n")
    return keys


# -- verifying ---------------------------------------------------------------------------
class ReplayGuard:
    """Event ids of the non-idempotent commands one process accepted, until they expire.

    Bounded: past ``capacity`` ids it forgets the one expiring first and from then on
    refuses every command expiring no later than that (``floor``), so a forgotten id can
    never be accepted again, and fresh commands (expiring later) still pass."""

    def __init__(self, capacity: int) -> None:
        self.capacity = max(1, capacity)
        self._heap: list[tuple[datetime, str]] = []
        self._seen: set[str] = set()
        self.floor: datetime | None = None

    def __len__(self) -> int:
        return len(self._seen)

    def claim(self, event_id: str, expires_at: datetime, horizon: datetime) -> str | None:
        """Record ``event_id``; why it is refused, or None. Ids whose command expired
        before ``horizon`` (now less the clock skew) are forgotten: they are refused as
        expired anyway."""
        while self._heap and self._heap[0][0] < horizon:
            self._seen.discard(heapq.heappop(self._heap)[1])
        if event_id in self._seen:
            return f"replayed: event {event_id} was already accepted"
        if self.floor is not None and expires_at <= self.floor:
            return (
                f"replay window full: only commands expiring after {self.floor.isoformat()} "
                "are accepted"
            )
        heapq.heappush(self._heap, (expires_at, event_id))
        self._seen.add(event_id)
        while len(self._seen) > self.capacity:
            expiry, forgotten = heapq.heappop(self._heap)
            self._seen.discard(forgotten)
            self.floor = expiry if self.floor is None else max(self.floor, expiry)
        return None


def _timestamp(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


@dataclass(frozen=True)
class UserKey:
    """A user's signing key as the API key registry states it (shared/keys.py)."""

    principal: str  # user:<name>
    role: str
    public_key: bytes
    api_key_id: str
    revoked: bool = False
    expires_at: datetime | None = None


class UserKeys(Protocol):
    """Where a verifier finds users' signing keys: a service's view of the API key registry
    (``shared.keys.KeyRegistry``), whose records the principal registry vouches for."""

    def user_key(self, key_id: str) -> UserKey | None:
        """The key registered with signing key id ``key_id`` (revoked and expired ones
        included, so the refusal can say so), or None."""
        ...

    def fresh(self) -> bool:
        """Whether the view is loaded and recent enough to trust (a missed revocation)."""
        ...

    def catch_up(self, timeout_s: float) -> Awaitable[bool]:
        """Wait until the view has read the registry to its end as of now."""
        ...


class Verifier:
    """Checks commands against the admin-signed registry (re-read when its file changes),
    their validity time, and (``once=True``) replays of their event id.

    With ``users`` (a view of the API key registry) it also accepts commands signed by a
    user's own key (principal ``user:<name>``), with that key's role, until the key is revoked
    or expires."""

    def __init__(
        self,
        settings: ServiceSettings,
        *,
        clock: Callable[[], datetime] = _utcnow,
        users: UserKeys | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.users = users
        self.user_wait_s = settings.key_registry_wait_s
        self.max_age = timedelta(seconds=settings.authority_max_age_s)
        self.skew = timedelta(seconds=settings.authority_clock_skew_s)
        self.replays = ReplayGuard(settings.authority_replay_cache)
        folder = settings.authority_dir or settings.data_dir
        self._registry_path = settings.authority_registry or folder / "authority.json"
        self._stamp: float | None = None
        self._principals: dict[str, Principal] | None = None
        self._problem = "no principal registry"

    def _admin_public(self) -> bytes:
        text = self.settings.authority_public_key
        if not text:
            path = (self.settings.authority_dir or self.settings.data_dir) / "authority.pub"
            try:
                text = path.read_text().strip()
            except OSError:
                raise RegistryError(f"no admin public key ({path} missing)") from None
        try:
            return _unb64(text.strip())
        except ValueError:
            raise RegistryError("the admin public key is not base64url") from None

    def principals(self) -> dict[str, Principal] | None:
        try:
            stamp = self._registry_path.stat().st_mtime
        except OSError:
            self._problem = f"no principal registry ({self._registry_path} missing)"
            return None
        if stamp != self._stamp:
            try:
                document = json.loads(self._registry_path.read_text())
                self._principals = read_registry(document, self._admin_public())
            except (RegistryError, OSError, ValueError) as exc:
                self._principals, self._problem = None, str(exc)
                log.error("principal registry rejected", extra={"error": str(exc)})
            self._stamp = stamp
        return self._principals

    def check(
        self, raw: bytes | str | dict[str, Any], *, once: bool = False
    ) -> tuple[str, str | None]:
        """(principal, why it is refused | None) of a command's original payload.

        ``once``: the consumer is not idempotent, so an ``event_id`` accepted before (within
        the validity time) is refused as a replay."""
        try:
            payload = raw if isinstance(raw, dict) else json.loads(raw or b"")
        except (ValueError, TypeError):
            return "unknown", "not JSON"
        if not isinstance(payload, dict):
            return "unknown", "not an event"
        event_type = str(payload.get("event_type"))
        authority = payload.get("authority")
        if not isinstance(authority, dict):
            return "unknown", "unsigned"
        principal = str(authority.get("principal", "unknown"))
        if principal.startswith(USER_PREFIX) and self.users is not None:
            user = self._user_entry(principal, authority, event_type)
            if isinstance(user, str):
                return principal, user
            entry = user
        else:
            principals = self.principals()
            if principals is None:
                return principal, self._problem
            found = principals.get(principal)
            if found is None:
                return principal, f"unknown principal {principal!r}"
            entry = found
        if authority.get("key_id") != key_id(entry.public_key):
            return principal, f"key {authority.get('key_id')!r} is not {principal}'s"
        if authority.get("role") != entry.role:
            return principal, f"{principal} does not hold role {authority.get('role')!r}"
        try:
            Ed25519PublicKey.from_public_bytes(entry.public_key).verify(
                _unb64(str(authority.get("signature", ""))), canonical(payload)
            )
        except (InvalidSignature, ValueError):
            return principal, "bad signature"
        allowed = event_type in entry.grants or entry.role in COMMANDS.get(event_type, ())
        if not allowed:
            return principal, f"{principal} (role {entry.role}) may not issue {event_type}"
        why = self._check_time(authority, expiring=event_type not in LOG_OF_RECORD)
        if why is None and once:
            expires = _timestamp(authority.get("expires_at"))
            assert expires is not None  # _check_time made sure
            why = self.replays.claim(
                str(payload.get("event_id")), expires, self.clock() - self.skew
            )
        return principal, why

    async def check_async(
        self, raw: bytes | str | dict[str, Any], *, once: bool = False
    ) -> tuple[str, str | None]:
        """``check``; a command signed by a user key is checked once the API key registry
        view has caught up with the registry's topic as it is now (at most
        ``LLMOPS_KEY_REGISTRY_WAIT_S``): a key created, or revoked, before the command was
        published is then known as such (one offsets request to the broker; no wait when the
        view is already there)."""
        if self.users is not None and self._pending_user_key(raw) is not None:
            await self.users.catch_up(self.user_wait_s)
        return self.check(raw, once=once)

    def _pending_user_key(self, raw: bytes | str | dict[str, Any]) -> str | None:
        try:
            payload = raw if isinstance(raw, dict) else json.loads(raw or b"")
        except (ValueError, TypeError):
            return None
        authority = payload.get("authority") if isinstance(payload, dict) else None
        if not isinstance(authority, dict):
            return None
        if not str(authority.get("principal", "")).startswith(USER_PREFIX):
            return None
        return str(authority.get("key_id"))

    def _user_entry(
        self, principal: str, authority: dict[str, Any], event_type: str
    ) -> Principal | str:
        """The registry entry of a user key that may still sign, or why not."""
        assert self.users is not None
        if not self.users.fresh():
            return "the API key registry view is not loaded or stale: user keys cannot be checked"
        signing_id = str(authority.get("key_id"))
        user = self.users.user_key(signing_id)
        if user is None:
            return f"unknown user key {signing_id!r}"
        if user.principal != principal:
            return f"key {signing_id!r} is not {principal}'s"
        if user.revoked:
            return f"key {signing_id!r} of {principal} (API key {user.api_key_id}) is revoked"
        now = self.clock()
        if user.expires_at is not None and now >= user.expires_at:
            return (
                f"key {signing_id!r} of {principal} (API key {user.api_key_id}) expired at "
                f"{user.expires_at.isoformat()}"
            )
        if event_type in NOT_FOR_USERS:
            return f"{principal} (a user key) may not issue {event_type}"
        return Principal(user.public_key, user.role)

    def _check_time(self, authority: dict[str, Any], *, expiring: bool = True) -> str | None:
        issued = _timestamp(authority.get("issued_at"))
        expires = _timestamp(authority.get("expires_at"))
        if issued is None or expires is None:
            return "no validity time (issued_at and expires_at, with a time zone)"
        if expires - issued > self.max_age or expires < issued:
            return (
                f"validity {expires - issued} is not within 0 and the maximum "
                f"{self.max_age} (LLMOPS_AUTHORITY_MAX_AGE_S)"
            )
        now = self.clock()
        if issued > now + self.skew:
            return f"issued in the future ({issued.isoformat()}, now {now.isoformat()})"
        if expiring and now > expires + self.skew:
            return f"expired at {expires.isoformat()} (now {now.isoformat()})"
        return None
