"""Commands signed with a user's own key (issue #13): the key registry carries the public key
of an API key, verifiers check the signature against it and the key's role per command, and a
forged, under-privileged, revoked or expired key is refused. API keys expire (401 that says
so). Pure: the verifier against a registry view fed directly, the gateway's key admin over a
SQLite store, the credential file on disk."""

from __future__ import annotations

import asyncio
import os
import stat
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import TopicPartition
from sqlmodel import SQLModel, create_engine

from services.serving.cli import parse_duration
from services.serving.gateway.adapters.key_store import ApiKey, RegistryLookup, SqlKeyStore
from services.serving.gateway.admin import KeyAdmin
from services.serving.gateway.config import GatewaySettings
from services.serving.gateway.keys import Action
from services.serving.gateway.protocol import APIError, KeyCreateRequest
from services.serving.gateway.serving import Gateway
from services.serving.gateway.workers import WorkerDirectory
from shared.authority import (
    Credential,
    CredentialError,
    Signer,
    Verifier,
    new_signing_key,
    read_credential,
    signer_for,
    user_principal,
    write_credential,
)
from shared.events import (
    ApiKeyChanged,
    ErasureRequested,
    Event,
    IngestRequested,
    LabelingProjectRequested,
    TrainingRequested,
)
from shared.keys import KeyDeniedError, KeyRegistry, KeyView, changed, new_secret, signing_key_id
from shared.settings import ServiceSettings

pytestmark = pytest.mark.handlers
ROOT = "the-root-admin-key"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


class WallClock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


def _registry(clock: WallClock) -> KeyRegistry:
    """A service's registry view, fed directly (no broker: always fresh)."""
    return KeyRegistry(ServiceSettings(require_authority=False), KeyView(lambda: ROOT, clock=clock))


def _user(
    registry: KeyRegistry, name: str, role: str, *, expires_at: datetime | None = None
) -> tuple[Signer, ApiKeyChanged]:
    """A user key as `llmops keys create` makes it: an API key with a signing key."""
    private, public = new_signing_key()
    record = changed(new_secret(), name, role, 1, 1, public_key=public, expires_at=expires_at)
    assert registry.view.apply(record)
    return Signer.from_text(user_principal(name), role, private), record


def _training() -> TrainingRequested:
    return TrainingRequested(model_name="m", dataset="d", dataset_version="1", base_model="tiny")


def _verifier(tmp_path: Path, registry: KeyRegistry, clock: WallClock) -> Verifier:
    settings = ServiceSettings(data_dir=tmp_path, require_authority=True)
    return Verifier(settings, users=registry, clock=clock)


def _check(verifier: Verifier, event: Event) -> str | None:
    return verifier.check(event.to_bytes())[1]


def test_a_registered_user_key_signs_what_its_role_may_issue(tmp_path: Path) -> None:
    clock = WallClock()
    registry = _registry(clock)
    verifier = _verifier(tmp_path, registry, clock)
    operator, record = _user(registry, "olga", "operator")
    assert signing_key_id(record.public_key) == operator.key_id
    for command in (
        IngestRequested(dataset="d", records=[{"text": "hi"}]),
        _training(),
    ):
        principal, why = verifier.check(operator.sign(command).to_bytes())
        assert (principal, why) == ("user:olga", None)
    # the role table: erasure and promotion are admin commands
    erase = operator.sign(ErasureRequested(subject_ref="s" * 16))
    assert "(role operator) may not issue llmops.erasure.requested" in str(_check(verifier, erase))


def test_forged_and_misattributed_user_signatures_are_refused(tmp_path: Path) -> None:
    clock = WallClock()
    registry = _registry(clock)
    verifier = _verifier(tmp_path, registry, clock)
    alice, _record = _user(registry, "alice", "admin")
    _bob, _ = _user(registry, "bob", "user")
    command = IngestRequested(dataset="d", records=[{"text": "hi"}])

    # a key pair of the attacker's own, claiming alice's key id: the signature does not check
    private, _public = new_signing_key()
    forger = Signer.from_text("user:alice", "admin", private)
    forged = forger.sign(command)
    assert forged.authority is not None
    forged = forged.model_copy(
        update={"authority": forged.authority.model_copy(update={"key_id": alice.key_id})}
    )
    assert _check(verifier, forged) == "bad signature"
    # a key not on the registry
    assert "unknown user key" in str(_check(verifier, forger.sign(command)))
    # alice's key used under bob's name, or claiming a role it was not registered with
    as_bob = Signer(user_principal("bob"), "admin", alice.key)
    assert "is not user:bob's" in str(_check(verifier, as_bob.sign(command)))
    upgraded = Signer(user_principal("alice"), "operator", alice.key)
    assert "does not hold role 'operator'" in str(_check(verifier, upgraded.sign(command)))
    # an edited command: its signature no longer covers it
    signed = alice.sign(command)
    edited = signed.model_copy(update={"dataset": "other"})
    assert _check(verifier, edited) == "bad signature"
    # and a user key, even an admin's, never writes the key registry that vouches for it
    grant = alice.sign(changed(new_secret(), "mallory", "admin", 1, 1))
    assert "(a user key) may not issue llmops.api-key.changed" in str(_check(verifier, grant))


def test_too_low_a_role_is_refused(tmp_path: Path) -> None:
    clock = WallClock()
    registry = _registry(clock)
    verifier = _verifier(tmp_path, registry, clock)
    user, _ = _user(registry, "ursula", "user")
    why = _check(verifier, user.sign(IngestRequested(dataset="d", records=[{"text": "x"}])))
    assert why == "user:ursula (role user) may not issue llmops.ingest.requested"
    annotator, _ = _user(registry, "anna", "annotator")
    why = _check(verifier, annotator.sign(_training()))
    assert why == "user:anna (role annotator) may not issue llmops.training.requested"


def test_a_revoked_or_expired_key_signs_nothing_from_then_on(tmp_path: Path) -> None:
    clock = WallClock()
    registry = _registry(clock)
    verifier = _verifier(tmp_path, registry, clock)
    command = IngestRequested(dataset="d", records=[{"text": "hi"}])
    revoked, record = _user(registry, "rita", "operator")
    signed_before = revoked.sign(command)
    assert _check(verifier, signed_before) is None
    registry.view.apply(record.model_copy(update={"revoked": True}))
    why = _check(verifier, signed_before)
    assert why is not None
    assert why.endswith("is revoked")
    # a replayed, older record saying live does not bring it back
    registry.view.apply(record)
    assert str(_check(verifier, revoked.sign(command))).endswith("is revoked")

    expiring, _ = _user(registry, "eve", "operator", expires_at=clock.now + timedelta(days=1))
    assert _check(verifier, expiring.sign(command)) is None
    clock.now += timedelta(days=1, seconds=1)
    assert "expired at" in str(_check(verifier, expiring.sign(command, now=clock.now)))


async def test_an_unknown_key_waits_for_the_registry_to_catch_up_then_is_refused(
    tmp_path: Path,
) -> None:
    """Without a broker the view is always caught up: the wait is immediate."""
    clock = WallClock()
    registry = _registry(clock)
    verifier = _verifier(tmp_path, registry, clock)
    private, _public = new_signing_key()
    stranger = Signer.from_text("user:nobody", "admin", private)
    _principal, why = await verifier.check_async(stranger.sign(_training()).to_bytes())
    assert "unknown user key" in str(why)


def test_the_role_table_for_users() -> None:
    from shared.authority import COMMANDS, NOT_FOR_USERS

    operator_may = {t for t, roles in COMMANDS.items() if "operator" in roles}
    assert operator_may == {
        IngestRequested.EVENT_TYPE,
        TrainingRequested.EVENT_TYPE,
        LabelingProjectRequested.EVENT_TYPE,
    }
    assert not {t for t, roles in COMMANDS.items() if "user" in roles}
    assert ApiKeyChanged.EVENT_TYPE in NOT_FOR_USERS


# -- the credential file -------------------------------------------------------------------
def _credential(name: str = "olga", role: str = "operator") -> Credential:
    private, _public = new_signing_key()
    return Credential(
        name=name, role=role, api_key=new_secret(), key_id="0123456789ab", signing_key=private
    )


def test_the_credential_file_is_private_and_signs_as_the_user(tmp_path: Path) -> None:
    path = write_credential(tmp_path / "creds" / "olga.json", _credential())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    with pytest.raises(FileExistsError):  # never overwritten
        write_credential(path, _credential())
    settings = ServiceSettings(data_dir=tmp_path, admin_key=ROOT, credentials=path)
    signer = signer_for(settings, user=True)
    assert signer is not None
    assert (signer.principal, signer.role) == ("user:olga", "operator")
    assert signer.key_id == read_credential(path).signer().key_id
    # without a credential: the admin key, as before
    admin = signer_for(ServiceSettings(data_dir=tmp_path, admin_key=ROOT), user=True)
    assert admin is not None
    assert admin.principal == "admin"
    # a file others may read is refused, like ssh's private keys
    os.chmod(path, 0o644)
    with pytest.raises(CredentialError, match="accessible by others"):
        signer_for(settings, user=True)
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    bad.chmod(0o600)
    with pytest.raises(CredentialError, match="malformed"):
        read_credential(bad)


def test_durations() -> None:
    assert parse_duration("30d") == 30 * 86400
    assert parse_duration("12h") == 12 * 3600
    assert parse_duration("90m") == 5400
    assert parse_duration("3600") == 3600
    assert parse_duration("2w") == 14 * 86400
    assert parse_duration("never") == 0
    for bad in ("", "-1d", "1y", "soon"):
        with pytest.raises(Exception, match="duration"):
            parse_duration(bad)


# -- API keys expire -------------------------------------------------------------------------
class MonotonicClock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


class Recording:
    def __init__(self) -> None:
        self.published: list[Event] = []

    async def publish(self, event: Event) -> Event:
        self.published.append(event)
        return event


async def test_an_expired_api_key_gets_a_401_that_says_so(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'gateway.db'}")
    SQLModel.metadata.create_all(engine, tables=[ApiKey.__table__])  # type: ignore[list-item]
    wall, mono = WallClock(), MonotonicClock()
    registry = _registry(wall)
    publisher = Recording()
    gateway = Gateway(
        GatewaySettings(),
        keys=RegistryLookup(registry),
        publisher=publisher,
        replies=None,  # type: ignore[arg-type]
        cancels=None,  # type: ignore[arg-type]
        directory=WorkerDirectory(),
        reply_topic="replies",
        clock=mono,
    )
    admin = KeyAdmin(gateway, SqlKeyStore(engine), publisher, GatewaySettings(), registry.view)
    _private, public = new_signing_key()
    made = await admin.create(
        f"Bearer {ROOT}",
        KeyCreateRequest(name="tmp", role="user", public_key=public, expires_in_s=3600),
    )
    assert made["principal"] == "user:tmp"
    assert made["signing_key_id"] == signing_key_id(public)
    expires = datetime.fromisoformat(made["expires_at"])
    assert timedelta(minutes=59) < expires - datetime.now(UTC) <= timedelta(hours=1)
    [record] = [e for e in publisher.published if isinstance(e, ApiKeyChanged)]
    assert (record.public_key, record.expires_at) == (public, expires)
    [listed] = [k for k in admin.list(f"Bearer {ROOT}")["data"] if k["key_id"] == made["key_id"]]
    assert (listed["expires_at"], listed["expired"]) == (made["expires_at"], False)
    assert gateway.authenticate(f"Bearer {made['key']}", Action.INFER)

    wall.now = expires + timedelta(seconds=1)  # past its expiry
    mono.now += Gateway.KEY_CACHE_S + 1  # and past the gateway's key cache
    with pytest.raises(APIError) as refused:
        gateway.authenticate(f"Bearer {made['key']}", Action.INFER)
    assert refused.value.status == 401
    assert refused.value.code == "expired_api_key"
    assert "expired at" in refused.value.message
    # every other API: the same registry, the same answer
    with pytest.raises(KeyDeniedError) as denied:
        registry.require(f"Bearer {made['key']}", None, "viewer")
    assert denied.value.status == 401
    assert "expired at" in denied.value.message

    # one signing key per API key
    with pytest.raises(APIError) as clash:
        await admin.create(
            f"Bearer {ROOT}", KeyCreateRequest(name="again", role="user", public_key=public)
        )
    assert clash.value.status == 400


async def test_keys_expire_by_default_when_the_gateway_says_so(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'gateway.db'}")
    SQLModel.metadata.create_all(engine, tables=[ApiKey.__table__])  # type: ignore[list-item]
    registry = _registry(WallClock())
    publisher = Recording()
    settings = GatewaySettings(key_default_expires_in_s=86400)
    gateway = Gateway(
        settings,
        keys=RegistryLookup(registry),
        publisher=publisher,
        replies=None,  # type: ignore[arg-type]
        cancels=None,  # type: ignore[arg-type]
        directory=WorkerDirectory(),
        reply_topic="replies",
    )
    admin = KeyAdmin(gateway, SqlKeyStore(engine), publisher, settings, registry.view)
    defaulted = await admin.create(f"Bearer {ROOT}", KeyCreateRequest(name="d", role="user"))
    assert defaulted["expires_at"] is not None
    forever = await admin.create(
        f"Bearer {ROOT}", KeyCreateRequest(name="f", role="user", expires_in_s=0)
    )
    assert forever["expires_at"] is None
    assert defaulted["principal"] is None  # no public key: the key signs nothing


class _FakeConsumer:
    """What the registry view reads of its Kafka consumer: one partition, the end offset its
    last fetch saw (``fetched``) and the one the broker has now (``end``, what the registry's
    ``end_offsets`` answers)."""

    def __init__(self, end: int) -> None:
        self.tp = TopicPartition("llmops.api-key.changed.v1", 0)
        self.end = self.fetched = end

    def assignment(self) -> set[Any]:
        return {self.tp}

    def highwater(self, _tp: Any) -> int:
        return self.fetched

    def last_poll_timestamp(self, _tp: Any) -> float:
        return time.time() * 1000

    async def end_offsets(self, partitions: list[Any]) -> dict[Any, int]:
        return dict.fromkeys(partitions, self.end)


async def test_a_revocation_published_just_before_a_command_is_applied_before_it(
    tmp_path: Path,
) -> None:
    """The view catches up with the topic's end offsets (asked of the broker when the
    command arrives) before a user-signed command is checked."""
    clock = WallClock()
    settings = ServiceSettings(require_authority=False, key_registry_wait_s=0.2)
    registry = KeyRegistry(settings, KeyView(lambda: ROOT, clock=clock))
    consumer = _FakeConsumer(end=0)
    registry.subscriber = SimpleNamespace(consumer=consumer)
    registry.end_offsets = consumer.end_offsets
    verifier = Verifier(
        ServiceSettings(data_dir=tmp_path, key_registry_wait_s=0.2), users=registry, clock=clock
    )
    olga, record = _user(registry, "olga", "operator")
    registry.receive(record.to_bytes(), offset=0)
    consumer.end = consumer.fetched = 1
    command = olga.sign(IngestRequested(dataset="d", records=[{"text": "hi"}])).to_bytes()
    assert (await verifier.check_async(command))[1] is None

    consumer.end = 2  # the revocation is on the topic; the view has not fetched it yet
    assert registry.fresh()  # as far as its last fetch knows
    assert not await registry.catch_up(0.1)

    async def fetch_later() -> None:
        await asyncio.sleep(0.05)
        consumer.fetched = 2
        registry.receive(record.model_copy(update={"revoked": True}).to_bytes(), offset=1)

    fetching = asyncio.create_task(fetch_later())
    verifier.user_wait_s = 5.0
    _principal, why = await verifier.check_async(command)
    await fetching
    assert str(why).endswith("is revoked")


def test_the_cli_says_why_a_credential_cannot_sign(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from shared.cli.main import app

    path = write_credential(tmp_path / "olga.json", _credential())
    path.chmod(0o644)
    monkeypatch.setenv("LLMOPS_CREDENTIALS", str(path))
    (tmp_path / "inbox").mkdir()
    (tmp_path / "inbox" / "a.txt").write_text("x\n")
    result = CliRunner().invoke(app, ["ingest", str(tmp_path / "inbox" / "a.txt"), "-d", "d"])
    assert result.exit_code == 2, result.output
    assert "accessible by others" in result.output
