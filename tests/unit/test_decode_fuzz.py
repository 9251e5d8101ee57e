"""Hypothesis fuzzing of event decoding: whatever arrives, decoding ends in an event or in
``EventDecodeError`` with a reason (the DLQ's), never in another exception that would kill
a consumer."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.events import EventDecodeError, all_models, decode

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
