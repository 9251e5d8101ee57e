from __future__ import annotations

import re

import pytest

from shared.events import all_models
from shared.topics import SPECS, Topic, all_topic_names

pytestmark = pytest.mark.unit
NAME = re.compile(r"^llmops\.[a-z-]+\.[a-z-]+\.v\d+$")


def test_every_topic_follows_the_naming_rule_and_has_an_event() -> None:
    for topic in Topic:
        assert NAME.match(topic.value), topic.value
        assert topic in SPECS
        assert topic.value.startswith(topic.event.EVENT_TYPE + ".v")
        assert topic.spec.key in topic.event.model_fields, (topic, topic.spec.key)


def test_every_topic_has_a_dlq_twin() -> None:
    names = dict(all_topic_names())
    for topic in Topic:
        assert names[topic.dlq] == 1
        assert topic.dlq == topic.value + ".dlq"


def test_every_catalogue_event_has_a_topic() -> None:
    carried = {topic.event.EVENT_TYPE for topic in Topic}
    registered = {event_type for event_type, _ in all_models()}
    assert registered <= carried | {t for t in registered if ".test." in t}


def test_parse_accepts_aliases_and_refuses_unknown_names() -> None:
    assert Topic.parse("model.promoted") is Topic.MODEL_PROMOTED
    assert Topic.parse("llmops.model.rolled-back.v1") is Topic.MODEL_ROLLED_BACK
    with pytest.raises(ValueError, match="unknown topic"):
        Topic.parse("model.exploded")


def test_raw_hops_and_their_dlqs_have_short_retention() -> None:
    """Security finding 3: raw text must not outlive its hop, in the DLQ twin neither."""
    from shared.topics import RAW_RETENTION_MS, topic_configs

    raw = [
        Topic.INGEST_REQUESTED,
        Topic.RECORDS_INGESTED,
        Topic.INFERENCE_REQUESTED,
        Topic.INFERENCE_COMPLETED,
        Topic.FEEDBACK_RECEIVED,
    ]
    for topic in raw:
        for name in (topic.value, topic.dlq):
            assert int(topic_configs(name)["retention.ms"]) <= RAW_RETENTION_MS, name
    assert topic_configs(Topic.RECORDS_ANONYMIZED.value) == {}
    assert topic_configs(Topic.AUDIT_RECORDED.dlq) == {}
