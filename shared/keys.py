"""The one API key registry of every HTTP API: roles, hashing, and each service's local view.

The key issuer (the serving gateway's key admin, behind ``llmops keys create|list|revoke``)
publishes each key's state as an ``ApiKeyChanged`` on the compacted topic
``llmops.api-key.changed.v1``: key id, sha256 of the key (never the key), principal name, role,
limits, revoked. Every service that answers HTTP keeps a ``KeyRegistry``: it reads that topic
from the beginning at each start (no consumer group, no committed offsets), keeps only hashes,
and resolves ``Authorization: Bearer <key>`` / ``X-API-Key: <key>`` to an ``ApiPrincipal``.

* Roles are ordered: viewer < user < annotator < operator < admin (``engineer``, the
  gateway's older name, ranks as user). An API states the least role it needs.
* The root (bootstrap) key is the admin key of the install: it resolves to an admin
  principal from the first second, before any key is issued, and is compared by hash
  (``settings.admin_key_hash()``: a service needs the hash only, not the key). It is a
  key like the others: the gateway lists it, and once its revocation is on the registry it
  is refused everywhere.
* Revocation is for good: once a key id is seen revoked, no later (or replayed, older)
  record brings it back.
* Records are checked like commands (``shared/authority.py``) when
  ``LLMOPS_REQUIRE_AUTHORITY`` is on: only the admin or a service granted
  ``llmops.api-key.changed`` (serving) may publish them; others are logged and ignored.
* Bounded staleness: a view that has not heard from the broker for
  ``LLMOPS_KEY_REGISTRY_MAX_STALENESS_S`` (or has not read the topic to its end yet since
  start) refuses every issued key, so a revocation it may have missed cannot be used longer
  than that. The root key keeps working (it is not issued on the topic).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from faststream.kafka import KafkaBroker
from faststream.middlewares import AckPolicy

from shared.authority import UserKey, Verifier, key_id, user_principal
from shared.bus.message import Message
from shared.bus.offsets import log_end_offsets
from shared.events.keys import ApiKeyChanged
from shared.events.registry import EventDecodeError, decode
from shared.settings import ServiceSettings
from shared.topics import Topic

log = logging.getLogger(__name__)

ROLES = ("viewer", "user", "annotator", "operator", "admin")
"""Ordered, least first: a role may do what every role before it may."""
LEGACY_ROLES = {"engineer": "user"}  # the gateway's older name for a model user
KEY_PREFIX = "sk-llmops-"
ROOT_NAME = "admin (root key)"
ROOT_RPM, ROOT_TPM = 1_000_000, 1_000_000_000


def rank(role: str) -> int:
    """Position of ``role`` in ``ROLES`` (-1 if unknown: an unknown role may do nothing)."""
    role = LEGACY_ROLES.get(role, role)
    return ROLES.index(role) if role in ROLES else -1


def at_least(role: str, needed: str) -> bool:
    return rank(role) >= rank(needed) >= 0


def new_secret() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(secret: str) -> str:
    """Keys are 256-bit random: a plain sha256 is enough (no dictionary to attack)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def key_id_of(secret: str) -> str:
    return hash_key(secret)[:12]


def presented_key(authorization: str | None, x_api_key: str | None = None) -> str | None:
    """The key a request carries: ``X-API-Key``, else ``Authorization: Bearer``."""
    if x_api_key and x_api_key.strip():
        return x_api_key.strip()
    scheme, _, token = (authorization or "").strip().partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def actor_of(key: str | None) -> str:
    """How audits name a presented key they may not trust: its key id, never the key."""
    return "key:" + key_id_of(key) if key else "anonymous"


def _utcnow() -> datetime:
    return datetime.now(UTC)


def signing_key_id(public_key: str) -> str | None:
    """The signing key id (shared/authority.py) of a record's base64url public key."""
    if not public_key:
        return None
    try:
        raw = base64.urlsafe_b64decode(public_key + "=" * (-len(public_key) % 4))
    except ValueError:
        return None
    return key_id(raw) if len(raw) == 32 else None


@dataclass(frozen=True)
class ApiPrincipal:
    """Who a valid key stands for."""

    key_id: str
    name: str
    role: str
    rpm: int
    tpm: int
    root: bool = False
    expires_at: datetime | None = None

    def at_least(self, role: str) -> bool:
        return at_least(self.role, role)

    @property
    def actor(self) -> str:
        return f"key:{self.key_id}"


class KeyDeniedError(Exception):
    """A request without a valid key (401) or whose key's role is too low (403)."""

    def __init__(self, status: int, message: str, principal: ApiPrincipal | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.principal = principal


class KeyView:
    """The registry's state from its records: pure, no I/O (the SDK's ``KeyRegistry``
    feeds it from the topic; tests feed it directly)."""

    def __init__(
        self,
        root_secret: Callable[[], str | None] = lambda: None,
        *,
        root_hash: Callable[[], str | None] | None = None,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        """``root_hash`` (the root key's sha256) if given, else the hash of ``root_secret``:
        a service recognises the root key without holding it."""
        self.root_secret = root_secret
        self.root_hash = root_hash
        self.clock = clock
        self._by_id: dict[str, ApiKeyChanged] = {}
        self._id_of_hash: dict[str, str] = {}
        self._id_of_signing_key: dict[str, str] = {}  # signing key id -> API key id
        self.revoked: set[str] = set()

    def apply(self, event: ApiKeyChanged) -> bool:
        """Take one record (False: its id is not its hash's); a revocation sticks whatever
        comes after it."""
        if event.key_hash[:12] != event.key_id:
            return False
        if event.revoked or event.key_id in self.revoked:
            self.revoked.add(event.key_id)
            event = event.model_copy(update={"revoked": True})
        self._by_id[event.key_id] = event
        self._id_of_hash[event.key_hash] = event.key_id
        if (signing := signing_key_id(event.public_key)) is not None:
            self._id_of_signing_key.setdefault(signing, event.key_id)
        return True

    def user_key(self, signing_id: str) -> UserKey | None:
        """The API key a signing key was registered with, as a verifier needs it (revoked
        and expired keys included: the verifier says why it refuses them)."""
        key_id = self._id_of_signing_key.get(signing_id)
        entry = self._by_id.get(key_id) if key_id is not None else None
        if entry is None:
            return None
        return UserKey(
            principal=user_principal(entry.name),
            role=entry.role,
            public_key=base64.urlsafe_b64decode(entry.public_key + "="),
            api_key_id=entry.key_id,
            revoked=entry.revoked,
            expires_at=entry.expires_at,
        )

    def expired(self, secret: str | None) -> datetime | None:
        """When an issued, unrevoked key expired, if it has (for a 401 that says so)."""
        if not secret:
            return None
        key_id = self._id_of_hash.get(hash_key(secret))
        entry = self._by_id.get(key_id) if key_id is not None else None
        if entry is None or entry.revoked or entry.expires_at is None:
            return None
        return entry.expires_at if self.clock() >= entry.expires_at else None

    def entries(self) -> list[ApiKeyChanged]:
        return sorted(self._by_id.values(), key=lambda e: e.occurred_at)

    def get(self, key_id: str) -> ApiKeyChanged | None:
        return self._by_id.get(key_id)

    def _root_digest(self) -> str | None:
        if self.root_hash is not None:
            return self.root_hash()
        secret = self.root_secret()
        return hash_key(secret) if secret else None

    def resolve(self, secret: str | None, *, issued: bool = True) -> ApiPrincipal | None:
        """The principal of a live key, or None (unknown, revoked; with ``issued=False``
        only the root key is considered)."""
        if not secret:
            return None
        digest = hash_key(secret)
        if digest[:12] in self.revoked:
            return None
        root = self._root_digest()
        if root and hmac.compare_digest(digest, root):
            return ApiPrincipal(digest[:12], ROOT_NAME, "admin", ROOT_RPM, ROOT_TPM, root=True)
        key_id = self._id_of_hash.get(digest)
        if issued and key_id is not None:
            entry = self._by_id[key_id]
            if entry.expires_at is not None and self.clock() >= entry.expires_at:
                return None  # expired: ``expired`` says since when
            return ApiPrincipal(
                entry.key_id,
                entry.name,
                entry.role,
                entry.rpm,
                entry.tpm,
                expires_at=entry.expires_at,
            )
        return None


class KeyRegistry:
    """A service's local view of the key registry, and the checks its HTTP API makes.

    ``attach(broker)`` (in the composition root, before the broker starts) subscribes to the
    registry topic without a consumer group: each start reads it from the beginning.
    Without ``attach`` (tests) the view is what ``view.apply`` was given, always fresh.
    """

    def __init__(
        self,
        settings: ServiceSettings,
        view: KeyView | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.view = view or KeyView(root_hash=settings.admin_key_hash)
        self.verifier = Verifier(settings) if settings.require_authority else None
        self.max_staleness_s = settings.key_registry_max_staleness_s
        self.clock = clock
        self.bootstrap = settings.bootstrap_servers
        self.kafka_options = settings.kafka_client_options()
        self.subscriber: Any = None
        # where ``catch_up`` learns the topic's end offsets (tests may replace it)
        self.end_offsets: Callable[[list[TopicPartition]], Awaitable[dict[TopicPartition, int]]]
        self.end_offsets = self._log_end_offsets
        self._ends_consumer: AIOKafkaConsumer | None = None  # started at the first catch_up
        self._ends_lock = asyncio.Lock()
        self.on_applied: Callable[[ApiKeyChanged], None] | None = None  # the issuer's watch
        self.rejected = 0
        self._next: dict[int, int] = {}  # partition -> offset after the last record read

    # -- feeding ------------------------------------------------------------------------
    def attach(self, broker: KafkaBroker) -> None:
        async def on_key_changed(message: Message) -> None:
            record = message.raw_message
            records = list(record) if isinstance(record, tuple | list) else [record]
            for one in records:
                self.receive(one.value, partition=one.partition, offset=one.offset)

        self.subscriber = broker.subscriber(
            Topic.API_KEYS.value,
            group_id=None,  # no group: every process reads the whole registry at start
            auto_offset_reset="earliest",
            ack_policy=AckPolicy.MANUAL,  # nothing to commit without a group
        )
        self.subscriber(on_key_changed)

    def receive(self, raw: bytes | None, *, partition: int = 0, offset: int = -1) -> bool:
        """Apply one record of the topic; False if it was refused (logged, not applied)."""
        if offset >= 0:
            self._next[partition] = max(self._next.get(partition, 0), offset + 1)
        if self.verifier is not None:
            principal, why = self.verifier.check(raw or b"")
            if why is not None:
                self.rejected += 1
                log.error(
                    "key registry record refused",
                    extra={"principal": principal[:200], "reason": why[:500], "offset": offset},
                )
                return False
        try:
            event = decode(raw or b"", expected=ApiKeyChanged)
        except EventDecodeError as exc:
            self.rejected += 1
            log.error("key registry record unreadable", extra={"reason": exc.reason})
            return False
        if not isinstance(event, ApiKeyChanged) or not self.view.apply(event):
            self.rejected += 1
            return False
        if self.on_applied is not None:
            self.on_applied(event)
        return True

    # -- freshness ----------------------------------------------------------------------
    def _consumer(self) -> Any:
        consumer = getattr(self.subscriber, "consumer", None)
        return consumer if hasattr(consumer, "highwater") else None

    def loaded(self) -> bool:
        """Whether the view has read the topic to its end since start (a health check)."""
        if self.subscriber is None:
            return True
        consumer = self._consumer()
        if consumer is None:
            # FastStream's in-memory test broker runs subscribers without a Kafka consumer;
            # a real one has its consumer a moment after it runs (the view is empty till then)
            return bool(getattr(self.subscriber, "running", False))
        assignment = consumer.assignment()
        if not assignment:
            return False
        for tp in assignment:
            highwater = consumer.highwater(tp)
            if highwater is None or self._next.get(tp.partition, 0) < highwater:
                return False
        return True

    def fresh(self) -> bool:
        """Loaded, and heard from the broker within the staleness bound."""
        if not self.loaded():
            return False
        consumer = self._consumer()
        if consumer is None:
            return True
        now_ms = self.clock() * 1000
        for tp in consumer.assignment():
            polled = consumer.last_poll_timestamp(tp)
            if polled is None or now_ms - polled > self.max_staleness_s * 1000:
                return False
        return True

    async def catch_up(self, timeout_s: float) -> bool:
        """Wait (at most ``timeout_s``) until the view has applied every record the topic
        holds now: its end offsets are asked of the broker after this call, so a record
        published before it (a key created, or revoked, a moment ago) is then applied. True
        if it caught up; without a Kafka consumer (in-memory tests), whether it is loaded.

        The end offsets are the high watermarks Fetch answers (``log_end_offsets``), not
        ListOffsets': on the embedded broker that is the base offset + 1 of the last batch,
        so a revocation further in a multi-record batch would count as read before it is."""
        consumer = self._consumer()
        if consumer is None:
            return self.loaded()
        deadline = time.monotonic() + timeout_s
        while not consumer.assignment():
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.02)
        try:
            ends = await asyncio.wait_for(
                self.end_offsets(sorted(consumer.assignment())),
                max(0.0, deadline - time.monotonic()),
            )
        except Exception as exc:  # the broker did not answer in time: not caught up
            log.warning("key registry end offsets unavailable", extra={"error": repr(exc)})
            return False
        while any(self._next.get(tp.partition, 0) < end for tp, end in ends.items()):
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.02)
        return True

    async def _log_end_offsets(self, parts: list[TopicPartition]) -> dict[TopicPartition, int]:
        """The log end offsets of ``parts``, from a consumer of the registry's own (no group,
        started at the first call and kept): the view's consumer is the subscriber's, whose
        assignment ``log_end_offsets`` may not touch. One call at a time."""
        async with self._ends_lock:
            if self._ends_consumer is None:
                consumer = AIOKafkaConsumer(
                    bootstrap_servers=self.bootstrap,
                    group_id=None,
                    enable_auto_commit=False,
                    fetch_max_wait_ms=100,  # a real Kafka holds a fetch past the end this long
                    **self.kafka_options,  # type: ignore[arg-type]
                )
                try:
                    await consumer.start()
                except BaseException:
                    await consumer.stop()
                    raise
                self._ends_consumer = consumer
            return await log_end_offsets(self._ends_consumer, parts)

    async def close(self) -> None:
        """Stop the consumer ``catch_up`` asks end offsets with (if it was started)."""
        consumer, self._ends_consumer = self._ends_consumer, None
        if consumer is not None:
            await consumer.stop()

    def user_key(self, key_id: str) -> UserKey | None:
        """A user's signing key by its id (``shared.authority.UserKeys``)."""
        return self.view.user_key(key_id)

    # -- checking -----------------------------------------------------------------------
    def resolve(self, secret: str | None) -> ApiPrincipal | None:
        return self.view.resolve(secret, issued=self.fresh())

    def require(self, authorization: str | None, x_api_key: str | None, role: str) -> ApiPrincipal:
        """The caller's principal if its key is live and holds ``role`` or above;
        ``KeyDeniedError`` (401 no/unknown/revoked key, 403 role too low) otherwise."""
        key = presented_key(authorization, x_api_key)
        if key is None:
            raise KeyDeniedError(401, "an API key is required (Authorization: Bearer or X-API-Key)")
        principal = self.resolve(key)
        if principal is None:
            if (expired := self.view.expired(key)) is not None:
                raise KeyDeniedError(401, f"API key expired at {expired.isoformat()}")
            raise KeyDeniedError(401, "invalid or revoked API key")
        if not principal.at_least(role):
            raise KeyDeniedError(
                403,
                f"this needs role {role} or above; the key's role is {principal.role}",
                principal,
            )
        return principal


def changed(
    secret_or_hash: str,
    name: str,
    role: str,
    rpm: int,
    tpm: int,
    *,
    revoked: bool = False,
    actor: str = "",
    hashed: bool = False,
    public_key: str = "",
    expires_at: datetime | None = None,
) -> ApiKeyChanged:
    """The registry record of a key (from the key, or from its sha256 with ``hashed``);
    ``public_key``: the holder's Ed25519 signing key (base64url), ``expires_at``: when the
    key stops working."""
    digest = secret_or_hash if hashed else hash_key(secret_or_hash)
    return ApiKeyChanged(
        key_id=digest[:12],
        key_hash=digest,
        name=name[:100],
        role=role,
        rpm=rpm,
        tpm=tpm,
        revoked=revoked,
        actor=actor,
        public_key=public_key,
        expires_at=expires_at,
    )
