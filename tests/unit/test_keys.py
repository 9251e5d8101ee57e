"""The platform's one API key registry (shared/keys.py): the view built from its records, the
root key, the role order, and which records a service accepts."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from shared.authority import Signer, derive_key, private_text, provision, service_principal
from shared.events import ApiKeyChanged
from shared.keys import (
    KeyDeniedError,
    KeyRegistry,
    KeyView,
    at_least,
    changed,
    hash_key,
    key_id_of,
    new_secret,
    presented_key,
)
from shared.settings import ServiceSettings
from shared.topics import Topic, topic_configs

pytestmark = pytest.mark.unit
ROOT = "root-admin-key"


def test_roles_are_ordered_and_unknown_roles_may_nothing() -> None:
    assert at_least("admin", "operator")
    assert at_least("operator", "annotator")
    assert at_least("annotator", "user")
    assert at_least("engineer", "user")  # the gateway's older name ranks as user
    assert not at_least("engineer", "annotator")
    assert not at_least("annotator", "operator")
    assert not at_least("viewer", "user")
    assert not at_least("root", "viewer")
    assert not at_least("admin", "superuser")


def test_presented_key_reads_x_api_key_then_bearer() -> None:
    assert presented_key("Bearer abc") == "abc"
    assert presented_key("bearer  abc ") == "abc"
    assert presented_key("Basic abc") is None
    assert presented_key("Bearer ") is None
    assert presented_key(None, "xyz") == "xyz"
    assert presented_key("Bearer abc", "xyz") == "xyz"
    assert presented_key(None, "  ") is None


def test_issued_keys_resolve_by_hash_and_revocation_is_for_good() -> None:
    view = KeyView()
    secret = new_secret()
    issued = changed(secret, "ann", "annotator", 60, 1000)
    assert secret not in issued.model_dump_json()  # only the hash travels
    assert issued.key_hash == hash_key(secret)
    assert issued.key_id == key_id_of(secret)
    view.apply(issued)
    who = view.resolve(secret)
    assert who is not None
    assert (who.name, who.role, who.rpm) == ("ann", "annotator", 60)
    assert view.resolve("sk-llmops-other") is None
    view.apply(issued.model_copy(update={"revoked": True}))
    assert view.resolve(secret) is None
    # a replayed, older "issued" record (or a forged re-issue) does not bring it back
    view.apply(changed(secret, "ann", "admin", 60, 1000))
    assert view.resolve(secret) is None
    entry = view.get(issued.key_id)
    assert entry is not None
    assert entry.revoked


def test_the_root_key_works_from_the_start_and_can_be_revoked() -> None:
    view = KeyView(lambda: ROOT)
    root = view.resolve(ROOT)
    assert root is not None
    assert root.root
    assert root.role == "admin"
    assert view.resolve(ROOT + "x") is None
    admin = new_secret()
    view.apply(changed(admin, "second admin", "admin", 10, 10))
    view.apply(changed(ROOT, "admin (root key)", "admin", 1, 1, revoked=True))
    assert view.resolve(ROOT) is None  # revoked everywhere the registry reaches
    second = view.resolve(admin)
    assert second is not None
    assert second.role == "admin"
    assert not second.root


def test_a_service_recognises_the_root_key_by_its_hash_without_holding_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """compose/ gives services the root key's sha256 only (docs/deploy.md): from
    LLMOPS_ADMIN_KEY_SHA256, or the file authority-init writes in the authority folder."""
    monkeypatch.delenv("LLMOPS_ADMIN_KEY", raising=False)
    by_env = ServiceSettings(data_dir=tmp_path, admin_key_sha256=hash_key(ROOT).upper())
    (tmp_path / "authority").mkdir()
    (tmp_path / "authority" / "admin-key.sha256").write_text(hash_key(ROOT) + "\n")
    by_file = ServiceSettings(data_dir=tmp_path, authority_dir=tmp_path / "authority")
    for settings in (by_env, by_file):
        assert settings.admin_secret() is None
        registry = KeyRegistry(settings.model_copy(update={"require_authority": False}))
        root = registry.resolve(ROOT)
        assert root is not None
        assert (root.root, root.role) == (True, "admin")
        assert registry.resolve(ROOT + "x") is None
    nothing = ServiceSettings(data_dir=tmp_path)
    assert nothing.admin_key_hash() is None
    assert (
        KeyRegistry(nothing.model_copy(update={"require_authority": False})).resolve(ROOT) is None
    )
    with pytest.raises(ValueError, match=r"admin_key_sha256|LLMOPS_ADMIN_KEY_SHA256"):
        ServiceSettings(admin_key_sha256="not-a-hash")


def test_require_says_401_for_unknown_or_revoked_and_403_for_a_low_role() -> None:
    registry = KeyRegistry(ServiceSettings(require_authority=False), KeyView(lambda: ROOT))
    annotator = new_secret()
    registry.view.apply(changed(annotator, "ann", "annotator", 1, 1))
    assert registry.require(f"Bearer {ROOT}", None, "admin").root
    assert registry.require(None, annotator, "annotator").name == "ann"
    with pytest.raises(KeyDeniedError) as low:
        registry.require(None, annotator, "admin")
    assert low.value.status == 403
    assert "annotator" in low.value.message
    with pytest.raises(KeyDeniedError) as missing:
        registry.require(None, None, "viewer")
    assert missing.value.status == 401
    registry.view.apply(changed(annotator, "ann", "annotator", 1, 1, revoked=True))
    with pytest.raises(KeyDeniedError) as revoked:
        registry.require(None, annotator, "annotator")
    assert revoked.value.status == 401


def test_records_replayed_in_order_rebuild_the_same_view() -> None:
    """What a service does at each start: read the topic from the beginning."""
    keys = [new_secret() for _ in range(3)]
    log = [changed(k, f"k{i}", "user", 1, 1) for i, k in enumerate(keys)]
    log.append(changed(keys[1], "k1", "user", 1, 1, revoked=True))
    first, restarted = KeyView(), KeyView()
    for record in log:
        first.apply(record)
    for record in log:  # the restart reads the same bytes again
        restarted.apply(ApiKeyChanged.model_validate_json(record.to_bytes()))
    for view in (first, restarted):
        assert [view.resolve(k) is not None for k in keys] == [True, False, True]


def test_the_registry_topic_is_compacted_and_keyed_by_key_id() -> None:
    assert Topic.for_event(ApiKeyChanged) is Topic.API_KEYS
    assert Topic.API_KEYS.spec.key == "key_id"
    assert topic_configs(Topic.API_KEYS.value) == {"cleanup.policy": "compact"}
    assert topic_configs(Topic.API_KEYS.dlq) == {}


def _signed_registry(tmp_path: Path) -> tuple[KeyRegistry, Signer]:
    keys = provision(ROOT, tmp_path, {"serving": {ApiKeyChanged.EVENT_TYPE}, "labeling": set()})
    settings = ServiceSettings(data_dir=tmp_path, admin_key=ROOT, require_authority=True)
    serving = Signer.from_text(service_principal("serving"), "service", keys["serving"])
    return KeyRegistry(settings), serving


def test_a_service_accepts_only_records_signed_by_the_issuer_or_the_admin(
    tmp_path: Path,
) -> None:
    registry, serving = _signed_registry(tmp_path)
    secret = new_secret()
    record = changed(secret, "eve", "admin", 1, 1)
    assert not registry.receive(record.to_bytes())  # unsigned: anyone with Kafka access
    labeling_key = private_text(derive_key(ROOT, service_principal("labeling")))
    labeling = Signer.from_text(service_principal("labeling"), "service", labeling_key)
    assert not registry.receive(labeling.sign(record).to_bytes())  # not granted key records
    forged = serving.sign(record).model_copy(update={"role": "admin", "name": "mallory"})
    assert not registry.receive(forged.to_bytes())  # changed after signing
    assert registry.view.resolve(secret) is None
    assert registry.rejected == 3
    assert registry.receive(serving.sign(record).to_bytes())
    assert registry.resolve(secret) is not None
    revoked = changed(secret, "eve", "admin", 1, 1, revoked=True)
    assert registry.receive(Signer.admin(ROOT).sign(revoked).to_bytes())  # the admin may too
    assert registry.resolve(secret) is None
    assert not registry.receive(b"not json")


def test_a_record_whose_id_is_not_its_hash_is_refused() -> None:
    view = KeyView()
    secret, other = new_secret(), new_secret()
    mismatched = changed(secret, "x", "admin", 1, 1).model_copy(update={"key_id": key_id_of(other)})
    assert not view.apply(mismatched)
    assert view.resolve(secret) is None


def test_key_records_do_not_expire_a_later_start_replays_them(tmp_path: Path) -> None:
    """The registry topic is a log of record: a record signed long ago still counts."""
    registry, serving = _signed_registry(tmp_path)
    secret = new_secret()
    old = Signer(serving.principal, serving.role, serving.key, ttl_s=1)
    signed = old.sign(changed(secret, "old", "user", 1, 1))
    authority = signed.authority
    assert authority is not None
    assert authority.expires_at is not None
    later = authority.expires_at + timedelta(hours=1)
    assert registry.verifier is not None
    registry.verifier.clock = lambda: later
    assert registry.receive(signed.to_bytes())
    assert registry.resolve(secret) is not None
