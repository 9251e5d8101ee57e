"""`llmops consume <raw hop>.dlq`: a record holds a claim check; --resolve reads it back."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from shared.bus import EventBus, make_broker
from shared.cli.events import dlq_line
from shared.settings import ServiceSettings
from shared.storage.artifacts import ArtifactStore
from shared.topics import SPECS, Topic

pytestmark = pytest.mark.unit


def test_only_the_raw_hops_keep_claim_checks_in_their_dlqs() -> None:
    raw = {topic for topic, spec in SPECS.items() if spec.raw_text}
    assert raw == {
        Topic.INGEST_REQUESTED,
        Topic.RECORDS_INGESTED,
        Topic.INFERENCE_REQUESTED,
        Topic.INFERENCE_COMPLETED,
        Topic.FEEDBACK_RECEIVED,
    }
    assert all(SPECS[topic].retention_ms for topic in raw)


def test_consume_prints_the_claim_and_resolves_it_on_request(tmp_path: Path) -> None:
    transit = ArtifactStore(str(tmp_path / "transit"))
    bus = EventBus(
        make_broker(ServiceSettings(), client_id="t"), None, service="t", transit=transit
    )
    original = b'{"comment": "call Jane Roe at +44 20 7946 0958"'
    headers = {"x-llmops-dlq-reason": "undecodable"}
    body = bus._claim_dead_letter(original, headers)
    record = SimpleNamespace(
        offset=3, partition=0, value=body, headers=[(k, v.encode()) for k, v in headers.items()]
    )

    shown = dlq_line(record, None)
    assert "Jane Roe" not in str(shown)
    assert shown["headers"]["x-llmops-dlq-claim"] == "transit"
    assert "original" not in shown

    resolved = dlq_line(record, transit)
    assert resolved["original"] == original.decode()

    for path in (tmp_path / "transit" / "sha256").rglob("*"):
        if path.is_file():
            path.unlink()  # the transit store's lifecycle deleted it
    gone = dlq_line(record, transit)
    assert "original" not in gone
    assert gone["original_error"].startswith("FileNotFoundError")


def test_a_dlq_record_without_a_claim_prints_its_bytes() -> None:
    record = SimpleNamespace(offset=0, partition=1, value=b"not json", headers=[])
    assert dlq_line(record, None)["value"] == "not json"


def test_a_transit_store_that_fails_drops_the_bytes_not_the_record(tmp_path: Path) -> None:
    transit = ArtifactStore(str(tmp_path / "transit"))
    (tmp_path / "transit" / "staging").write_text("in the way")  # put_bytes cannot stage
    broker = make_broker(ServiceSettings(), client_id="t")
    bus = EventBus(broker, None, service="t", transit=transit)
    original = b'{"prompt": "call Jane Roe"}'
    headers: dict[str, str] = {}
    body = bus._claim_dead_letter(original, headers)
    assert b"Jane Roe" not in body
    assert headers["x-llmops-dlq-claim"] == "dropped"
    assert json.loads(body)["size"] == len(original)
