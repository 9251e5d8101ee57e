"""One key registry for every HTTP API (shared/keys.py): a key issued by the gateway works
wherever its role reaches, a revoked one is refused everywhere, an annotator key cannot
de-anonymize. The gateway's key admin over a real SQLite store, the de-anonymization API and
the labeling service over ASGI with FastStream's in-memory broker."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from sqlmodel import Session, SQLModel, create_engine

from services.anonymization.adapters.api import build_api
from services.audit.adapters import store as _audit_tables  # noqa: F401 (registers the tables)
from services.audit.adapters.api import build_api as build_audit_api
from services.serving.gateway.adapters.key_store import ApiKey, RegistryLookup, SqlKeyStore
from services.serving.gateway.admin import KeyAdmin
from services.serving.gateway.config import GatewaySettings
from services.serving.gateway.keys import Action, Role
from services.serving.gateway.protocol import APIError, KeyCreateRequest
from services.serving.gateway.serving import Gateway
from services.serving.gateway.workers import WorkerDirectory
from shared.authority import Signer, provision
from shared.events import ApiKeyChanged, AuditRecorded, Event
from shared.keys import (
    ROOT_NAME,
    ROOT_RPM,
    ROOT_TPM,
    KeyRegistry,
    KeyView,
    changed,
    hash_key,
    new_secret,
)
from shared.settings import ServiceSettings
from shared.storage import make_engine
from shared.topics import Topic
from tests.labeling.support import ADMIN as LABELING_ADMIN
from tests.labeling.support import running

pytestmark = pytest.mark.handlers
ROOT = "the-root-admin-key"


# -- the gateway: the issuer ----------------------------------------------------------------
class RecordingPublisher:
    def __init__(self) -> None:
        self.published: list[Event] = []

    async def publish(self, event: Event) -> Event:
        self.published.append(event)
        return event


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


def _issuer(tmp_path: Path) -> tuple[KeyAdmin, Gateway, SqlKeyStore, KeyRegistry, Clock]:
    engine = create_engine(f"sqlite:///{tmp_path / 'gateway.db'}")
    SQLModel.metadata.create_all(engine, tables=[ApiKey.__table__])  # type: ignore[list-item]
    store = SqlKeyStore(engine)
    registry = KeyRegistry(ServiceSettings(require_authority=False), KeyView(lambda: ROOT))
    publisher, clock = RecordingPublisher(), Clock()
    gateway = Gateway(
        GatewaySettings(),
        keys=RegistryLookup(registry),
        publisher=publisher,
        replies=None,  # type: ignore[arg-type]
        cancels=None,  # type: ignore[arg-type]
        directory=WorkerDirectory(),
        reply_topic="replies",
        clock=clock,
    )
    admin = KeyAdmin(gateway, store, publisher, GatewaySettings(), registry.view)
    return admin, gateway, store, registry, clock


def _records(admin: KeyAdmin) -> list[ApiKeyChanged]:
    published = admin.publisher.published  # type: ignore[attr-defined]
    return [e for e in published if isinstance(e, ApiKeyChanged)]


async def test_the_gateway_publishes_hashed_key_records_and_refuses_revoked_keys(
    tmp_path: Path,
) -> None:
    admin, gateway, _store, _registry, _clock = _issuer(tmp_path)
    root = f"Bearer {ROOT}"
    made = await admin.create(root, KeyCreateRequest(name="ann", role="annotator"))
    secret, key_id = made["key"], made["key_id"]
    [issued] = _records(admin)
    assert (issued.key_id, issued.name, issued.role, issued.revoked) == (
        key_id,
        "ann",
        "annotator",
        False,
    )
    assert secret not in issued.model_dump_json()  # the topic carries the hash only
    assert gateway.authenticate(f"Bearer {secret}", Action.FEEDBACK).key_id == key_id
    with pytest.raises(APIError) as low:
        gateway.authenticate(f"Bearer {secret}", Action.MANAGE_KEYS)
    assert low.value.status == 403

    await admin.revoke(root, key_id)
    assert (_records(admin)[-1].key_id, _records(admin)[-1].revoked) == (key_id, True)
    with pytest.raises(APIError) as refused:
        gateway.authenticate(f"Bearer {secret}", Action.FEEDBACK)
    assert refused.value.status == 401
    audits = [e for e in admin.publisher.published if isinstance(e, AuditRecorded)]  # type: ignore[attr-defined]
    assert [a.action for a in audits] == ["key.create", "key.revoke"]


async def test_a_revocation_from_the_registry_topic_reaches_the_gateway(tmp_path: Path) -> None:
    """Another gateway replica revoked the key: its record arrives on the topic."""
    admin, gateway, _store, registry, clock = _issuer(tmp_path)
    made = await admin.create(f"Bearer {ROOT}", KeyCreateRequest(name="u", role="user"))
    assert gateway.authenticate(f"Bearer {made['key']}", Action.INFER)
    registry.receive(_records(admin)[-1].model_copy(update={"revoked": True}).to_bytes())
    clock.now += Gateway.KEY_CACHE_S + 1  # the gateway's key cache is the bound
    with pytest.raises(APIError) as refused:
        gateway.authenticate(f"Bearer {made['key']}", Action.INFER)
    assert refused.value.status == 401


async def test_the_issuer_answers_a_replayed_live_record_of_a_revoked_key(tmp_path: Path) -> None:
    """Someone with Kafka access re-publishes the old, signed 'issued' record of a revoked key:
    running views keep it revoked, and the gateway publishes the revocation again so the
    compacted topic's latest record for the key (what later views start from) says revoked."""
    admin, _gateway, _store, registry, _clock = _issuer(tmp_path)
    made = await admin.create(f"Bearer {ROOT}", KeyCreateRequest(name="u", role="user"))
    [issued] = _records(admin)
    await admin.revoke(f"Bearer {ROOT}", made["key_id"])
    seen: list[ApiKeyChanged] = []
    registry.on_applied = seen.append
    assert registry.receive(issued.to_bytes())  # the replay: a valid, old record
    assert [r.key_id for r in seen] == [made["key_id"]]
    assert registry.resolve(made["key"]) is None  # a running view keeps it revoked
    before = len(_records(admin))
    assert await admin.reassert(seen[0])
    latest = _records(admin)[-1]
    assert len(_records(admin)) == before + 1
    assert (latest.key_id, latest.revoked) == (made["key_id"], True)
    assert not await admin.reassert(latest)  # a revocation needs no answer
    later = KeyView()
    for record in (issued, latest):  # what a compacted topic can still hold, in order
        later.apply(record)
    assert later.resolve(made["key"]) is None


async def test_the_root_key_is_listed_revocable_and_not_re_enabled_at_start(
    tmp_path: Path,
) -> None:
    admin, gateway, store, _registry, _clock = _issuer(tmp_path)
    assert store.ensure(hash_key(ROOT), ROOT_NAME, Role.ADMIN, ROOT_RPM, ROOT_TPM)
    second = await admin.create(f"Bearer {ROOT}", KeyCreateRequest(name="ops", role="admin"))
    listed = admin.list(f"Bearer {ROOT}")["data"]
    root_id = next(k["key_id"] for k in listed if k["name"] == ROOT_NAME)
    await admin.revoke(f"Bearer {second['key']}", root_id)  # an issued admin key revokes it
    with pytest.raises(APIError):
        gateway.authenticate(f"Bearer {ROOT}", Action.LIST_MODELS)
    # a restart ensures the root key again: it stays revoked, and says so on the topic
    assert not store.ensure(hash_key(ROOT), ROOT_NAME, Role.ADMIN, ROOT_RPM, ROOT_TPM)
    fresh, *_ = _issuer(tmp_path)
    assert await fresh.republish() == 2
    republished = {r.key_id: r.revoked for r in _records(fresh)}
    assert republished[root_id] is True
    assert fresh.view is not None
    assert fresh.view.resolve(ROOT) is None



def test_a_root_key_inserted_by_another_process_meanwhile_is_not_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Gateway processes sharing one new database all ensure the root key at start; one that
    reads "absent" and then loses the race to insert it finds it there, like a later start."""
    _admin, _gateway, store, *_ = _issuer(tmp_path)
    other = SqlKeyStore(store.engine)  # the other process, on the same database
    real_get = Session.get

    def get_then_lose_the_race(self: Session, *args: Any, **kwargs: Any) -> Any:
        found = real_get(self, *args, **kwargs)
        monkeypatch.setattr(Session, "get", real_get)
        assert other.ensure(hash_key(ROOT), ROOT_NAME, Role.ADMIN, ROOT_RPM, ROOT_TPM)
        return found

    monkeypatch.setattr(Session, "get", get_then_lose_the_race)
    assert not store.ensure(hash_key(ROOT), ROOT_NAME, Role.ADMIN, ROOT_RPM, ROOT_TPM)
    assert [r.name for r in store.records()] == [ROOT_NAME]

# -- the de-anonymization API ------------------------------------------------------------------
class RecordingBus:
    def __init__(self) -> None:
        self.emitted: list[Any] = []

    def emit(self, event: Event) -> Event:
        self.emitted.append(event)
        return event

    @contextlib.contextmanager
    def unit_of_work(self) -> Iterator[Any]:
        yield SimpleNamespace(emit=self.emit)


async def test_de_anonymization_needs_a_live_admin_key_of_the_registry() -> None:
    registry = KeyRegistry(ServiceSettings(require_authority=False), KeyView(lambda: ROOT))
    annotator, admin = new_secret(), new_secret()
    registry.view.apply(changed(annotator, "ann", "annotator", 1, 1))
    registry.view.apply(changed(admin, "ops", "admin", 1, 1))
    bus = RecordingBus()
    api = build_api(
        SimpleNamespace(bus=bus, engine=None),  # type: ignore[arg-type]
        lambda _session: None,  # type: ignore[arg-type,return-value]
        registry,
        lambda subject: f"ref-{len(subject)}",
    )
    transport = httpx.ASGITransport(app=api)
    async with httpx.AsyncClient(transport=transport, base_url="http://anon") as http:
        low = await http.post(
            "/v1/deanonymize", json={"record_id": "r1"}, headers={"x-api-key": annotator}
        )
        assert low.status_code == 403
        assert "admin" in low.json()["error"]  # a JSON body that says what is needed
        erase_low = await http.post(
            "/v1/erasures", json={"subject": "a@b.c"}, headers={"x-api-key": annotator}
        )
        assert erase_low.status_code == 403
        assert "error" in erase_low.json()
        erased = await http.post(
            "/v1/erasures", json={"subject": "a@b.c"}, headers={"authorization": f"Bearer {admin}"}
        )
        assert erased.status_code == 202, erased.text
        registry.view.apply(changed(admin, "ops", "admin", 1, 1, revoked=True))
        revoked = await http.post(
            "/v1/deanonymize", json={"record_id": "r1"}, headers={"x-api-key": admin}
        )
        assert revoked.status_code == 401
        assert "revoked" in revoked.json()["error"]
    audits = [
        (e.action, e.allowed, e.details.get("outcome"))
        for e in bus.emitted
        if isinstance(e, AuditRecorded)
    ]
    assert ("deanonymize", False, "forbidden") in audits
    assert ("deanonymize", False, "unauthenticated") in audits
    assert ("erasure.request", True, None) in audits


# -- the labeling service ----------------------------------------------------------------------
async def test_labeling_takes_registry_keys_of_annotator_role_and_drops_revoked_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLMOPS_REQUIRE_AUTHORITY", "true")  # registry records are checked
    provision(LABELING_ADMIN, tmp_path, {"serving": {ApiKeyChanged.EVENT_TYPE}})
    admin = Signer.admin(LABELING_ADMIN)
    annotator, viewer, forged = new_secret(), new_secret(), new_secret()
    async with running(tmp_path) as h:
        broker = h.runtime.broker  # FastStream's in-memory broker (TestKafkaBroker)

        async def publish(event: ApiKeyChanged) -> None:
            await broker.publish(event.to_bytes(), Topic.API_KEYS.value)
            await asyncio.sleep(0)

        await publish(admin.sign(changed(annotator, "ann", "annotator", 1, 1)))
        signin = await h.http.post("/login", data={"key": annotator})
        assert signin.status_code == 303  # the UI's sign-in takes the same keys
        assert (
            await h.http.get("/ui", cookies={"llmops_labeling_key": annotator})
        ).status_code == 200
        await publish(admin.sign(changed(viewer, "view", "viewer", 1, 1)))
        await publish(changed(forged, "eve", "admin", 1, 1))  # unsigned: ignored
        listing = await h.http.get("/api/projects", headers=h.as_(annotator))
        assert listing.status_code == 200, listing.text
        assert (await h.http.get("/api/projects", headers=h.as_(viewer))).status_code == 403
        assert (await h.http.get("/api/projects", headers=h.as_(forged))).status_code == 401
        create = await h.http.post("/api/annotators", json={"name": "x"}, headers=h.as_(annotator))
        assert create.status_code == 403  # annotators do not manage the service
        await publish(admin.sign(changed(annotator, "ann", "annotator", 1, 1, revoked=True)))
        after = await h.http.get("/api/projects", headers={"x-api-key": annotator})
        assert after.status_code == 401
        assert (await h.http.post("/login", data={"key": annotator})).status_code == 401
        ui = await h.http.get("/ui", cookies={"llmops_labeling_key": annotator})
        assert ui.status_code == 303  # a revoked key's session is over too: back to sign-in
        assert ui.headers["location"] == "/login"


# -- the audit trail ----------------------------------------------------------------------------
async def test_the_audit_trail_is_read_with_operator_keys_of_the_registry(tmp_path: Path) -> None:
    registry = KeyRegistry(ServiceSettings(require_authority=False), KeyView(lambda: ROOT))
    annotator, operator = new_secret(), new_secret()
    registry.view.apply(changed(annotator, "ann", "annotator", 1, 1))
    registry.view.apply(changed(operator, "ops", "operator", 1, 1))
    api = build_audit_api(make_engine(f"sqlite:///{tmp_path / 'audit.db'}"), registry, 100)
    transport = httpx.ASGITransport(app=api)
    async with httpx.AsyncClient(transport=transport, base_url="http://audit") as http:
        assert (await http.get("/v1/audit", headers={"x-api-key": operator})).status_code == 200
        low = await http.get("/v1/audit/verify", headers={"x-api-key": annotator})
        assert low.status_code == 403
        assert "operator" in low.json()["error"]
        assert (await http.get("/v1/audit")).status_code == 401
        registry.view.apply(changed(operator, "ops", "operator", 1, 1, revoked=True))
        assert (await http.get("/v1/audit", headers={"x-api-key": operator})).status_code == 401
        assert (await http.get("/v1/audit", headers={"x-api-key": ROOT})).status_code == 200
