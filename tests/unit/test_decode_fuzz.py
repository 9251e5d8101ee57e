"""Hypothesis fuzzing of event decoding: whatever arrives, decoding ends in an event or in
``EventDecodeError`` with a reason (the DLQ's), never in another exception that would kill
a consumer."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.events import AlertRaised, AuditRecorded, EventDecodeError, all_models, decode
from shared.events.registry import _fast_decode

pytestmark = pytest.mark.unit

REASONS = {
    "undecodable",
    "not-an-event",
    "wrong-event-type",
    "unknown-event-type",
    "unknown-version",
    "invalid",
}
EVENT_TYPES = sorted({event_type for event_type, _ in all_models()})

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)


def _decodes_or_names_a_reason(raw: Any) -> None:
    reason = None
    try:
        decode(raw)
    except EventDecodeError as exc:
        reason = exc.reason
    assert reason is None or reason in REASONS, reason


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_arbitrary_bytes(raw: bytes) -> None:
    _decodes_or_names_a_reason(raw)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_arbitrary_json(value: Any) -> None:
    _decodes_or_names_a_reason(json.dumps(value).encode())


@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from(EVENT_TYPES),
    st.one_of(st.none(), st.integers(-3, 5), st.text(max_size=3)),
    st.dictionaries(st.text(max_size=15), json_values, max_size=8),
)
def test_event_shaped_payloads(event_type: str, version: Any, fields: dict[str, Any]) -> None:
    """Right event type, fuzzed version and fields: the hardest case for the tolerant reader."""
    payload = {**fields, "event_type": event_type, "schema_version": version}
    _decodes_or_names_a_reason(json.dumps(payload).encode())


def _outcome(raw: Any, expected: Any) -> Any:
    try:
        return decode(raw, expected=expected)
    except EventDecodeError as exc:
        return exc.reason


AUDIT = AuditRecorded(action="a", actor="b", allowed=True, target="t", details={"k": "v"})
AUDIT_FIELDS = json.loads(AUDIT.to_bytes())


@settings(max_examples=400, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from([*AUDIT_FIELDS, "extra", "details"]) | st.text(max_size=8),
        json_values,
        max_size=4,
    ),
    # not the fields with a default factory (a new id or time at each decode)
    st.sets(
        st.sampled_from(sorted(set(AUDIT_FIELDS) - {"event_id", "correlation_id", "occurred_at"})),
        max_size=2,
    ),
    st.sampled_from([AuditRecorded, AlertRaised]),
)
def test_bytes_for_a_topic_decode_as_the_tolerant_reader_does(
    changed: dict[str, Any], dropped: set[str], expected: Any
) -> None:
    """Bytes of a topic's type go through one ``model_validate_json`` when they are what
    the platform writes: whatever the bytes, the outcome (event or reason) is the tolerant
    reader's, which a dict always takes."""
    payload = {k: v for k, v in {**AUDIT_FIELDS, **changed}.items() if k not in dropped}
    raw = json.dumps(payload, separators=(",", ":")).encode()
    assert _outcome(raw, expected) == _outcome(json.loads(raw), expected)


def test_the_platform_s_bytes_decode_in_one_pass() -> None:
    """What ``to_bytes`` writes takes the one-pass way and gives the same event."""
    assert _fast_decode(AUDIT.to_bytes(), AuditRecorded) == AUDIT
    assert decode(AUDIT.to_bytes(), expected=AuditRecorded) == AUDIT
    assert _fast_decode(AUDIT.to_bytes(), AlertRaised) is None  # another type: the reader's
