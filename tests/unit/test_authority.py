"""Command authority: keys, signatures, the admin-signed registry and the role table."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from shared.authority import (
    ADMIN,
    COMMANDS,
    ReplayGuard,
    Signer,
    Verifier,
    _b64,
    canonical,
    derive_key,
    key_id,
    private_text,
    provision,
    public_bytes,
    service_principal,
    signer_for,
)
from shared.events import (
    AuditRecorded,
    ErasureRequested,
    IngestRequested,
    ModelPromoted,
    TrainingRequested,
)
from shared.events.ingest import SourceSpec
from shared.settings import ServiceSettings

pytestmark = pytest.mark.unit

SECRET = "llm-test-admin-secret"
GRANTS = {"monitoring": {TrainingRequested.EVENT_TYPE}, "evaluation": {ModelPromoted.EVENT_TYPE}}


@pytest.fixture
def keys(data_dir: Path) -> dict[str, str]:
    return provision(SECRET, data_dir, {k: set(v) for k, v in GRANTS.items()})


@pytest.fixture
def verifier(data_dir: Path, keys: dict[str, str]) -> Verifier:
    return Verifier(ServiceSettings(data_dir=data_dir))


def ingest() -> IngestRequested:
    return IngestRequested(dataset="d", sources=[SourceSpec(uri="/data/tickets.jsonl")])


def promoted() -> ModelPromoted:
    return ModelPromoted(model_name="m", model_version="v2")


def service(name: str, keys: dict[str, str]) -> Signer:
    return Signer.from_text(service_principal(name), "service", keys[name])


def test_signed_command_verifies(verifier: Verifier) -> None:
    signed = Signer.admin(SECRET).sign(ingest())
    assert signed.authority is not None
    assert signed.authority.principal == ADMIN
    assert signed.authority.signature
    assert verifier.check(signed.to_bytes()) == (ADMIN, None)


def test_keys_are_deterministic_and_domain_separated() -> None:
    assert private_text(derive_key(SECRET, "admin")) == private_text(derive_key(SECRET, "admin"))
    assert private_text(derive_key(SECRET, "admin")) != private_text(
        derive_key(SECRET, "service:admin")
    )
    assert private_text(derive_key(SECRET, "admin")) != private_text(derive_key("other", "admin"))


@pytest.mark.parametrize(
    ("field", "value"),
    [("dataset", "other"), ("producer", "mallory"), ("causation_id", None)],
)
def test_a_tampered_field_is_rejected(verifier: Verifier, field: str, value: object) -> None:
    payload = json.loads(Signer.admin(SECRET).sign(ingest()).to_bytes())
    payload[field] = value if value is not None else "00000000-0000-0000-0000-000000000001"
    assert verifier.check(json.dumps(payload).encode())[1] == "bad signature"


def test_a_changed_source_is_rejected(verifier: Verifier) -> None:
    payload = json.loads(Signer.admin(SECRET).sign(ingest()).to_bytes())
    payload["sources"][0]["uri"] = "/etc/hostname"
    assert verifier.check(payload)[1] == "bad signature"


def test_a_wrong_key_is_rejected(verifier: Verifier) -> None:
    forged = Signer.admin("not-the-admin-secret").sign(ingest())
    assert "is not admin's" in str(verifier.check(forged.to_bytes())[1])
    # the right key id copied, the signature still from another key
    real = Signer.admin(SECRET).sign(ingest())
    assert forged.authority is not None
    assert real.authority is not None
    payload = json.loads(forged.to_bytes())
    payload["authority"]["key_id"] = real.authority.key_id
    assert verifier.check(payload)[1] == "bad signature"


@pytest.mark.parametrize(
    ("raw", "why"),
    [(None, "not JSON"), (b"\xff", "not JSON"), (b"[1]", "not an event"), (b"{}", "unsigned")],
)
def test_garbage_is_refused_not_raised(verifier: Verifier, raw: bytes | None, why: str) -> None:
    assert verifier.check(raw) == ("unknown", why)  # type: ignore[arg-type]


def test_unsigned_and_unknown_principals_are_rejected(
    verifier: Verifier, keys: dict[str, str]
) -> None:
    assert verifier.check(ingest().to_bytes()) == ("unknown", "unsigned")
    stranger = Signer.from_text("service:mallory", "service", keys["monitoring"])
    assert verifier.check(stranger.sign(ingest()).to_bytes())[1] == (
        "unknown principal 'service:mallory'"
    )


def test_a_claimed_role_must_be_the_registered_one(keys: dict[str, str], data_dir: Path) -> None:
    verifier = Verifier(ServiceSettings(data_dir=data_dir))
    uppity = Signer.from_text(service_principal("monitoring"), ADMIN, keys["monitoring"])
    assert "does not hold role 'admin'" in str(
        verifier.check(uppity.sign(promoted()).to_bytes())[1]
    )


def test_services_issue_only_their_granted_commands(
    verifier: Verifier, keys: dict[str, str]
) -> None:
    monitoring, evaluation = service("monitoring", keys), service("evaluation", keys)
    assert (
        verifier.check(
            monitoring.sign(
                TrainingRequested(model_name="m", dataset="d", dataset_version="v1", base_model="b")
            ).to_bytes()
        )[1]
        is None
    )
    assert verifier.check(evaluation.sign(promoted()).to_bytes())[1] is None
    refused = verifier.check(monitoring.sign(promoted()).to_bytes())[1]
    assert refused == "service:monitoring (role service) may not issue llmops.model.promoted"
    assert verifier.check(evaluation.sign(ErasureRequested(subject_ref="s")).to_bytes())[1]


def test_role_table() -> None:
    assert COMMANDS[ErasureRequested.EVENT_TYPE] == {"admin"}
    assert COMMANDS[IngestRequested.EVENT_TYPE] == {"admin", "operator"}
    assert COMMANDS[TrainingRequested.EVENT_TYPE] == {"admin", "operator"}
    assert "service" not in set().union(*COMMANDS.values())  # services only through grants
    assert AuditRecorded.EVENT_TYPE not in COMMANDS


def test_a_registry_not_signed_by_the_admin_key_trusts_no_one(
    data_dir: Path, keys: dict[str, str]
) -> None:
    registry = json.loads((data_dir / "authority.json").read_text())
    registry["principals"]["service:monitoring"]["grants"].append(ModelPromoted.EVENT_TYPE)
    (data_dir / "authority.json").write_text(json.dumps(registry))
    verifier = Verifier(ServiceSettings(data_dir=data_dir))
    why = verifier.check(service("monitoring", keys).sign(promoted()).to_bytes())[1]
    assert why is not None
    assert "not signed by the admin key" in why
    assert verifier.check(Signer.admin(SECRET).sign(ingest()).to_bytes())[1] == why


def test_no_registry_refuses_everything(data_dir: Path) -> None:
    verifier = Verifier(ServiceSettings(data_dir=data_dir))
    assert "no principal registry" in str(
        verifier.check(Signer.admin(SECRET).sign(ingest()).to_bytes())[1]
    )


def test_the_public_key_setting_overrides_the_file(data_dir: Path, keys: dict[str, str]) -> None:
    other = provision("another-admin", data_dir / "other", {})
    assert other == {}
    settings = ServiceSettings(
        data_dir=data_dir, authority_public_key=(data_dir / "other" / "authority.pub").read_text()
    )
    why = Verifier(settings).check(Signer.admin(SECRET).sign(ingest()).to_bytes())[1]
    assert why is not None
    assert "not signed by the admin key" in why


def test_facts_are_not_signed_and_signed_commands_stay_signed(keys: dict[str, str]) -> None:
    signer = service("monitoring", keys)
    fact = AuditRecorded(action="a", actor="b", allowed=True)
    assert signer.sign_command(fact).authority is None
    signed = Signer.admin(SECRET).sign(ingest())
    assert signer.sign_command(signed) is signed


def test_signer_for_settings(data_dir: Path, keys: dict[str, str]) -> None:
    assert signer_for(ServiceSettings(data_dir=data_dir)) is None
    user = signer_for(ServiceSettings(data_dir=data_dir, admin_key=SECRET), user=True)
    assert user is not None
    assert user.principal == ADMIN
    own = signer_for(
        ServiceSettings(
            data_dir=data_dir,
            admin_key=SECRET,
            authority_principal="service:monitoring",
            authority_key=keys["monitoring"],
        ),
        user=True,
    )
    assert own is not None
    assert own.principal == "service:monitoring"
    assert keys["monitoring"] not in repr(ServiceSettings(authority_key=keys["monitoring"]))


def test_llmops_up_grants_each_service_the_commands_its_plugin_produces(data_dir: Path) -> None:
    from shared.stack.supervisor import provision_authority

    keys = provision_authority(ServiceSettings(data_dir=data_dir, admin_key=SECRET))
    registry = json.loads((data_dir / "authority.json").read_text())["principals"]
    grants = {name: set(entry["grants"]) for name, entry in registry.items()}
    assert grants["admin"] == set()
    assert registry["admin"]["role"] == "admin"
    assert grants["service:monitoring"] == {TrainingRequested.EVENT_TYPE}
    assert grants["service:evaluation"] == {ModelPromoted.EVENT_TYPE, "llmops.model.rolled-back"}
    assert grants["service:serving"] == {"llmops.inference.requested", "llmops.api-key.changed"}
    assert grants["service:anonymization"] == {ErasureRequested.EVENT_TYPE}
    assert grants["service:ingestion"] == set()
    assert grants["service:labeling"] == {  # model suggestions; project changes from its API
        "llmops.inference.requested",
        "llmops.labeling-project.requested",
    }
    assert SECRET not in (data_dir / "authority.json").read_text()
    verifier = Verifier(ServiceSettings(data_dir=data_dir))
    for name, key in keys.items():  # each service's key is the one registered for it
        signer = Signer.from_text(service_principal(name), "service", key)
        why = verifier.check(signer.sign(ingest()).to_bytes())[1]
        assert why == f"service:{name} (role service) may not issue llmops.ingest.requested"
    assert verifier.check(service("monitoring", keys).sign(ingest()).to_bytes())[1] == (
        "service:monitoring (role service) may not issue llmops.ingest.requested"
    )


# -- validity time and replays (issue #13) -------------------------------------------------
T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def timed_verifier(data_dir: Path, clock: Clock, **settings: Any) -> Verifier:
    return Verifier(ServiceSettings(data_dir=data_dir, **settings), clock=clock)


def test_signatures_cover_issued_at_and_expires_at(keys: dict[str, str], data_dir: Path) -> None:
    clock = Clock()
    verifier = timed_verifier(data_dir, clock, authority_max_age_s=600)
    signed = Signer.admin(SECRET, ttl_s=600).sign(ingest(), now=T0)
    assert signed.authority is not None
    assert signed.authority.issued_at == T0
    assert signed.authority.expires_at == T0 + timedelta(seconds=600)
    payload = json.loads(signed.to_bytes())
    # the canonical bytes hold both times, in the form the event carries them
    assert b'"expires_at":"2026-01-01T12:10:00Z"' in canonical(payload)
    assert b'"issued_at":"2026-01-01T12:00:00Z"' in canonical(payload)
    assert verifier.check(payload) == (ADMIN, None)
    for name, later in (
        ("expires_at", "2026-01-02T12:10:00Z"),
        ("issued_at", "2026-01-01T12:05:00Z"),
    ):
        stretched = json.loads(signed.to_bytes())
        stretched["authority"][name] = later
        assert verifier.check(stretched)[1] == "bad signature"


def test_expired_and_future_dated_commands_are_refused(
    keys: dict[str, str], data_dir: Path
) -> None:
    clock = Clock()
    verifier = timed_verifier(data_dir, clock, authority_max_age_s=600, authority_clock_skew_s=30)
    signed = Signer.admin(SECRET, ttl_s=600).sign(ingest(), now=T0).to_bytes()
    clock.now = T0 + timedelta(seconds=629)  # within the skew after expiry
    assert verifier.check(signed)[1] is None
    clock.now = T0 + timedelta(seconds=631)
    assert str(verifier.check(signed)[1]).startswith("expired at 2026-01-01T12:10:00+00:00")
    clock.now = T0 - timedelta(seconds=29)  # the signer's clock a little ahead: fine
    assert verifier.check(signed)[1] is None
    clock.now = T0 - timedelta(seconds=31)
    assert str(verifier.check(signed)[1]).startswith("issued in the future")


def test_a_validity_longer_than_the_maximum_is_refused(
    keys: dict[str, str], data_dir: Path
) -> None:
    verifier = timed_verifier(data_dir, Clock(), authority_max_age_s=600)
    long_lived = Signer.admin(SECRET, ttl_s=601).sign(ingest(), now=T0)
    assert "is not within 0 and the maximum 0:10:00" in str(
        verifier.check(long_lived.to_bytes())[1]
    )
    backwards = Signer.admin(SECRET, ttl_s=-1).sign(ingest(), now=T0)
    assert "is not within" in str(verifier.check(backwards.to_bytes())[1])


def test_a_command_without_validity_time_is_refused(keys: dict[str, str], data_dir: Path) -> None:
    """Signed the way commands were before expiry existed: a valid signature, no times."""
    verifier = timed_verifier(data_dir, Clock())
    payload = json.loads(ingest().to_bytes())
    admin = derive_key(SECRET, ADMIN)
    payload["authority"] = {
        "principal": ADMIN,
        "role": ADMIN,
        "key_id": key_id(public_bytes(admin)),
    }
    payload["authority"]["signature"] = _b64(admin.sign(canonical(payload)))
    assert str(verifier.check(payload)[1]).startswith("no validity time")
    naive = dict(payload, authority=dict(payload["authority"], issued_at="2026-01-01T12:00:00"))
    naive["authority"]["expires_at"] = "2026-01-01T12:05:00"
    naive["authority"]["signature"] = _b64(admin.sign(canonical(naive)))
    assert str(verifier.check(naive)[1]).startswith("no validity time")


def test_a_signer_in_another_language_reproduces_the_signed_bytes(
    keys: dict[str, str], data_dir: Path
) -> None:
    """A payload built by hand (no pydantic; an offset written +00:00, not Z) verifies: the
    signature is over the bytes as sent, and the times parse in any ISO 8601 UTC form."""
    verifier = timed_verifier(data_dir, Clock())
    admin = derive_key(SECRET, ADMIN)
    payload: dict[str, Any] = {
        "event_id": "8a1f7a5e-0000-4000-8000-000000000001",
        "event_type": IngestRequested.EVENT_TYPE,
        "schema_version": IngestRequested.SCHEMA_VERSION,
        "dataset": "d",
        "sources": [{"uri": "/data/tickets.jsonl"}],
        "authority": {
            "principal": ADMIN,
            "role": ADMIN,
            "key_id": key_id(public_bytes(admin)),
            "issued_at": "2026-01-01T12:00:00+00:00",
            "expires_at": "2026-01-01T12:05:00+00:00",
        },
    }
    payload["authority"]["signature"] = _b64(admin.sign(canonical(payload)))
    assert verifier.check(json.dumps(payload, indent=2)) == (ADMIN, None)


def test_a_replay_is_refused_only_where_the_consumer_is_not_idempotent(
    keys: dict[str, str], data_dir: Path
) -> None:
    verifier = timed_verifier(data_dir, Clock())
    signed = Signer.admin(SECRET).sign(ingest(), now=T0).to_bytes()
    assert verifier.check(signed, once=True)[1] is None
    assert verifier.check(signed, once=True)[1] == (
        f"replayed: event {json.loads(signed)['event_id']} was already accepted"
    )
    assert verifier.check(signed)[1] is None  # an idempotent consumer's inbox drops it
    # a refused command is not remembered: a forged copy does not block the real one
    other = Signer.admin(SECRET).sign(ingest(), now=T0)
    tampered = json.loads(other.to_bytes())
    tampered["dataset"] = "x"
    assert verifier.check(tampered, once=True)[1] == "bad signature"
    assert verifier.check(other.to_bytes(), once=True)[1] is None


def test_the_replay_guard_is_bounded_and_never_forgets_into_acceptance() -> None:
    guard = ReplayGuard(capacity=3)
    horizon = T0
    expiry = [T0 + timedelta(seconds=s) for s in (10, 20, 30, 40)]
    for i in range(3):
        assert guard.claim(f"e{i}", expiry[i], horizon) is None
    assert guard.claim("e3", expiry[3], horizon) is None  # e0 (expiring first) is forgotten
    assert len(guard) == 3
    assert guard.floor == expiry[0]
    assert str(guard.claim("e0", expiry[0], horizon)).startswith("replay window full")
    assert str(guard.claim("e1", expiry[1], horizon)).startswith("replayed")
    assert guard.claim("fresh", T0 + timedelta(seconds=50), horizon) is None
    # ids whose commands expired are dropped (they are refused as expired anyway)
    assert guard.claim("late", T0 + timedelta(seconds=100), T0 + timedelta(seconds=60)) is None
    assert len(guard) == 1


def test_signer_for_signs_with_the_configured_validity(data_dir: Path) -> None:
    user = signer_for(
        ServiceSettings(data_dir=data_dir, admin_key=SECRET, authority_max_age_s=120), user=True
    )
    assert user is not None
    authority = user.sign(ingest()).authority
    assert authority is not None
    assert authority.expires_at is not None
    assert authority.issued_at is not None
    assert authority.expires_at - authority.issued_at == timedelta(seconds=120)


def test_authority_init_writes_what_compose_containers_read(tmp_path: Path) -> None:
    """compose/'s one-shot job: the public registry in one folder, each service's key in its
    own; a service reading them through LLMOPS_AUTHORITY_DIR/_KEY_FILE signs what it may."""
    from shared.deploy.authority import KEY_FILE, authority_init
    from shared.plugins import discover

    written = authority_init(SECRET, tmp_path / "pub", tmp_path / "keys", discover())
    assert set(written) == {plugin.name for plugin in discover()}
    assert oct(written["monitoring"].stat().st_mode & 0o777) == "0o600"
    assert written["monitoring"] == tmp_path / "keys" / "monitoring" / KEY_FILE
    first = {name: path.read_text() for name, path in written.items()}
    authority_init(SECRET, tmp_path / "pub", tmp_path / "keys", discover())
    assert {name: path.read_text() for name, path in written.items()} == first  # rerunnable

    settings = ServiceSettings(
        data_dir=tmp_path / "elsewhere",
        authority_dir=tmp_path / "pub",
        authority_key_file=written["monitoring"],
        authority_principal=service_principal("monitoring"),
        admin_key=SECRET,
    )
    signer = signer_for(settings)
    assert signer is not None
    assert signer.principal == "service:monitoring"
    training = TrainingRequested(model_name="m", dataset="d", dataset_version="v1", base_model="b")
    assert Verifier(settings).check(signer.sign(training).to_bytes())[1] is None
    assert "may not issue" in str(Verifier(settings).check(signer.sign(promoted()).to_bytes())[1])
    # the CLI run in that container with the principal emptied signs as the admin
    cli = signer_for(settings.model_copy(update={"authority_principal": ""}), user=True)
    assert cli is not None
    assert cli.principal == ADMIN


def test_promotions_are_the_log_of_record_and_do_not_expire(
    keys: dict[str, str], data_dir: Path
) -> None:
    """A serving worker that joins a day later rebuilds its routing from the whole history of
    promotions: a day-old promotion still verifies (its inbox absorbs replays); a day-old
    ingest request does not. Future-dated promotions are refused all the same."""
    clock = Clock(T0 + timedelta(days=1))
    verifier = timed_verifier(data_dir, clock)
    old_promotion = service("evaluation", keys).sign(promoted(), now=T0)
    assert verifier.check(old_promotion.to_bytes()) == ("service:evaluation", None)
    old_ingest = Signer.admin(SECRET).sign(ingest(), now=T0)
    assert str(verifier.check(old_ingest.to_bytes())[1]).startswith("expired at")
    ahead = service("evaluation", keys).sign(promoted(), now=T0 + timedelta(days=2))
    assert str(verifier.check(ahead.to_bytes())[1]).startswith("issued in the future")
