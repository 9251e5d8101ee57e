from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import Field, ValidationError

from shared.events import AuditRecorded, Event, EventDecodeError, IngestRequested, decode
from shared.events import registry as reg

pytestmark = pytest.mark.unit


@pytest.fixture
def isolated_registry() -> Iterator[None]:
    saved = (dict(reg._MODELS), dict(reg._LATEST), dict(reg._UPCASTERS))
    yield
    for target, value in zip((reg._MODELS, reg._LATEST, reg._UPCASTERS), saved, strict=True):
        target.clear()
        target.update(value)


def test_envelope_is_filled_and_frozen() -> None:
    event = AuditRecorded(action="promote", actor="k1", allowed=True)
    assert event.event_type == "llmops.audit.recorded"
    assert event.schema_version == 1
    assert isinstance(event.event_id, uuid.UUID)
    assert event.occurred_at.tzinfo is not None
    with pytest.raises(ValidationError):
        event.action = "other"  # type: ignore[misc]


def test_caused_keeps_correlation_and_links_causation() -> None:
    first = AuditRecorded(action="a", actor="x", allowed=True)
    second = first.caused(AuditRecorded, action="b", actor="x", allowed=True)
    assert second.correlation_id == first.correlation_id
    assert second.causation_id == first.event_id
    assert second.event_id != first.event_id


def test_producers_are_strict_about_unknown_fields() -> None:
    with pytest.raises(ValidationError, match="bogus"):
        IngestRequested(dataset="d", bogus=1)  # type: ignore[call-arg]


def test_a_model_refuses_another_event_type() -> None:
    with pytest.raises(ValidationError, match="is not"):
        AuditRecorded.model_validate(
            {"event_type": "llmops.other", "action": "a", "actor": "x", "allowed": True}
        )


def test_decode_roundtrip_and_tolerant_reader() -> None:
    event = IngestRequested(dataset="tickets", producer="t")
    payload = json.loads(event.to_bytes())
    payload["added_by_a_newer_producer"] = {"x": 1}
    decoded = decode(json.dumps(payload).encode(), expected=IngestRequested)
    assert decoded == event


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\xff\xfe not json", "undecodable"),
        (b"[1, 2]", "not-an-event"),
        (b'{"event_type": "llmops.nope", "schema_version": 1}', "unknown-event-type"),
        (b'{"event_type": "llmops.audit.recorded", "schema_version": 9}', "unknown-version"),
        (b'{"event_type": "llmops.audit.recorded", "schema_version": 1}', "invalid"),
    ],
)
def test_decode_names_the_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(EventDecodeError) as info:
        decode(raw)
    assert info.value.reason == reason


def test_decode_refuses_the_wrong_type_for_a_topic() -> None:
    event = AuditRecorded(action="a", actor="x", allowed=True)
    with pytest.raises(EventDecodeError) as info:
        decode(event.to_bytes(), expected=IngestRequested)
    assert info.value.reason == "wrong-event-type"


def test_upcasters_bring_old_versions_to_the_latest(isolated_registry: None) -> None:
    @reg.register("llmops.test.thing", 1)
    class ThingV1(Event):
        name: str = Field(description="full name")

    @reg.register("llmops.test.thing", 2)
    class ThingV2(Event):
        first: str = Field(description="first name")
        last: str = Field(description="last name")

    @reg.upcaster("llmops.test.thing", 1)
    def split_name(payload: dict[str, Any]) -> dict[str, Any]:
        first, _, last = payload.pop("name").partition(" ")
        return {**payload, "first": first, "last": last}

    old = ThingV1(name="Ada Lovelace")
    new = decode(old.to_bytes())
    assert isinstance(new, ThingV2)
    assert (new.first, new.last, new.event_id) == ("Ada", "Lovelace", old.event_id)


def test_a_version_without_upcaster_is_refused(isolated_registry: None) -> None:
    @reg.register("llmops.test.gap", 1)
    class GapV1(Event):
        a: int = Field(description="a")

    @reg.register("llmops.test.gap", 2)
    class GapV2(Event):
        b: int = Field(description="b")

    with pytest.raises(EventDecodeError) as info:
        decode(GapV1(a=1).to_bytes())
    assert info.value.reason == "unknown-version"


def test_consumers_ignore_unknown_nested_fields_producers_do_not() -> None:
    """A field added by a newer producer inside a nested payload never breaks an old reader."""
    from pydantic import ValidationError

    from shared.events import RecordsIngested, decode
    from shared.events.ingest import Record

    event = RecordsIngested(
        dataset="d",
        request_id=uuid.uuid4(),
        batch_index=0,
        count=1,
        records=[Record(record_id="r1", text="hello")],
    )
    payload = json.loads(event.model_dump_json())
    payload["records"][0]["added_later"] = {"x": 1}
    decoded = decode(json.dumps(payload).encode())
    assert decoded.records[0].text == "hello"  # type: ignore[attr-defined]
    with pytest.raises(ValidationError):
        Record.model_validate({"record_id": "r", "text": "t", "added_later": 1})
