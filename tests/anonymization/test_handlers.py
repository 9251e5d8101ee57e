from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from faststream.kafka import TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage
from sqlmodel import Session

from services.anonymization.app import build
from services.anonymization.config import AnonymizationSettings
from services.anonymization.crypto import UnreadableError
from shared.events import (
    ClaimCheck,
    DatasetVersioned,
    ErasureRequested,
    Event,
    FeedbackReceived,
    InferenceCompleted,
    ModelTrained,
    RecordsIngested,
    decode,
)
from shared.events.ingest import Record
from shared.events.privacy import AnonymizedRecord
from shared.topics import Topic
from tests.anonymization.fakes import FakeEngine

pytestmark = pytest.mark.handlers

KNOWN = {"Alice Johnson": "PERSON", "Bob Stone": "PERSON", "4111 1111 1111 1111": "CREDIT_CARD"}


@dataclass
class Harness:
    runtime: Any
    broker: Any
    seen: dict[str, list[Event]] = field(default_factory=dict)
    headers: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    async def send(self, event: Event) -> None:
        await self.broker.publish(event.to_bytes(), Topic.for_event(event).value)
        assert self.runtime.bus.relay is not None
        await self.runtime.bus.relay.drain()

    def of(self, topic: Topic) -> list[Any]:
        return self.seen.get(topic.value, [])

    def vault(self, session: Session) -> Any:
        return self.runtime.state["vault_for"](session)


@pytest.fixture
async def harness(data_dir) -> AsyncIterator[Harness]:
    settings = AnonymizationSettings(
        data_dir=data_dir,
        kafka_bootstrap="127.0.0.1:1",
        api_port=0,
        pseudonym_key="ab" * 32,
        operators={"CREDIT_CARD": "mask"},
        handler_attempts=1,
    )
    runtime, _app = build(settings, engine=FakeEngine(KNOWN))
    harness = Harness(runtime, runtime.broker)
    for topic in (
        Topic.RECORDS_ANONYMIZED,
        Topic.ERASURE_COMPLETED,
        Topic.AUDIT_RECORDED,
        Topic.RECORDS_INGESTED,
    ):
        name = topic.dlq if topic is Topic.RECORDS_INGESTED else topic.value
        runtime.broker.subscriber(name, group_id=f"test-{topic.name}")(collector(harness, topic))
    async with TestKafkaBroker(runtime.broker) as broker:
        harness.broker = broker
        yield harness


def collector(harness: Harness, topic: Topic) -> Any:
    async def collect(message: KafkaMessage) -> None:
        harness.seen.setdefault(topic.value, []).append(message.body)
        harness.headers.setdefault(topic.value, []).append(dict(message.headers))

    return collect


def ingested(texts: list[str], **kwargs: Any) -> RecordsIngested:
    records = [
        Record(record_id=f"r{i}", text=t, metadata={"email": "alice@example.com"} if i == 0 else {})
        for i, t in enumerate(texts)
    ]
    return RecordsIngested(
        dataset="tickets",
        request_id=uuid.uuid4(),
        batch_index=0,
        records=records,
        count=len(records),
        **kwargs,
    )


def decoded(harness: Harness, topic: Topic) -> list[Any]:
    return [decode(body) if isinstance(body, bytes) else body for body in harness.of(topic)]


async def test_ingested_batch_is_anonymized_and_sealed(harness):
    source = ingested(["Alice Johnson paid with 4111 1111 1111 1111.", "No PII here."])
    await harness.send(source)
    [out] = decoded(harness, Topic.RECORDS_ANONYMIZED)
    assert out.dataset == "tickets"
    assert out.count == 2
    assert out.causation_id == source.event_id
    assert out.entity_counts == {"PERSON": 1, "CREDIT_CARD": 1}
    raw = out.model_dump_json()
    assert "Alice" not in raw
    assert "4111 1111 1111 1111" not in raw
    assert "alice@" not in raw
    first = out.records[0]
    assert "**** **** **** 1111" in first.text
    assert first.text.startswith("<PERSON_")
    assert first.metadata["email"].startswith("<EMAIL_ADDRESS_")
    assert len(first.subjects) == 3  # the person, the card and the e-mail in the metadata
    assert first.entities[0].operator == "pseudonym"
    with Session(harness.runtime.engine) as session:
        original = harness.vault(session).open_record("r0")
    assert original["text"] == "Alice Johnson paid with 4111 1111 1111 1111."


async def test_same_person_gets_the_same_token_across_batches(harness):
    await harness.send(ingested(["Alice Johnson called."]))
    await harness.send(ingested(["Later, Alice Johnson wrote again."]))
    first, second = decoded(harness, Topic.RECORDS_ANONYMIZED)
    token = first.records[0].text.split()[0]
    assert token in second.records[0].text


async def test_claim_checked_batch_is_read_from_transit_and_deleted_after_commit(harness):
    records = [Record(record_id="c1", text="Bob Stone here.")]
    body = "\n".join(r.model_dump_json() for r in records).encode()
    transit = harness.runtime.transit
    claim = transit.put_bytes(body, "application/jsonl")
    event = RecordsIngested(
        dataset="big", request_id=uuid.uuid4(), batch_index=3, claim=claim, count=1
    )
    await harness.send(event)
    [out] = decoded(harness, Topic.RECORDS_ANONYMIZED)
    assert out.batch_index == 3
    assert out.records[0].text.startswith("<PERSON_")
    assert not transit.exists(claim)  # the raw hop is over: the object is gone
    assert not harness.runtime.artifacts.exists(claim)  # and it never was an artifact
    await harness.send(event)  # redelivered after it was applied: the inbox skips it
    assert len(decoded(harness, Topic.RECORDS_ANONYMIZED)) == 1
    assert harness.of(Topic.RECORDS_INGESTED) == []  # nothing dead-lettered


async def test_a_failed_handler_keeps_the_raw_batch_for_the_retry(harness):
    claim = harness.runtime.transit.put_bytes(b'{"record_id": "x"}\n', "application/jsonl")
    event = RecordsIngested(
        dataset="d", request_id=uuid.uuid4(), batch_index=0, claim=claim, count=1
    )
    await harness.send(event)  # not a Record (no text): the handler fails, nothing commits
    assert len(harness.of(Topic.RECORDS_INGESTED)) == 1
    assert harness.runtime.transit.exists(claim)


async def test_erasure_shreds_and_reports_lineage(harness):
    keys = harness.runtime.state["keys"]
    await harness.send(ingested(["Alice Johnson wrote.", "Bob Stone wrote."]))
    manifest = harness.runtime.artifacts.put_bytes(
        json.dumps({"records": [{"record_id": "r0"}, {"record_id": "r1"}]}).encode()
    )
    await harness.send(
        DatasetVersioned(dataset="tickets", version="v1", records=2, manifest=manifest)
    )
    await harness.send(
        ModelTrained(
            run_id=uuid.uuid4(),
            model_name="m",
            model_version="3",
            artifact=ClaimCheck(uri="x", sha256="a" * 64, size=1),
            dataset="tickets",
            dataset_version="v1",
        )
    )
    request = ErasureRequested(subject_ref=keys.subject_ref("alice johnson"), producer="cli")
    await harness.send(request)
    [answer] = decoded(harness, Topic.ERASURE_COMPLETED)
    assert answer.request_id == request.event_id
    assert answer.service == "anonymization"
    assert answer.found
    assert answer.records == ["r0"]
    assert answer.dataset_versions == ["tickets@v1"]
    assert answer.model_versions == ["m@3"]
    assert answer.removed["subject_keys"] == 1
    audits = decoded(harness, Topic.AUDIT_RECORDED)
    assert [a.action for a in audits] == ["erase"]
    with Session(harness.runtime.engine) as session:
        vault = harness.vault(session)
        with pytest.raises(UnreadableError):
            vault.open_record("r0")
        assert vault.open_record("r1")["text"] == "Bob Stone wrote."  # others untouched
        assert vault.erased(request.subject_ref)
    # the erased person's token is gone with the key: the same name seen again gets a new one,
    # so the old token cannot be recomputed to find what was left behind
    before = decoded(harness, Topic.RECORDS_ANONYMIZED)[0].records[0].text.split()[0]
    await harness.send(ingested(["Alice Johnson wrote again."]))
    after = decoded(harness, Topic.RECORDS_ANONYMIZED)[-1].records[0].text.split()[0]
    assert before.startswith("<PERSON_")
    assert after.startswith("<PERSON_")
    assert after != before


async def test_erasure_of_an_unknown_subject_reports_nothing_held(harness):
    request = ErasureRequested(subject_ref="0" * 32)
    await harness.send(request)
    [answer] = decoded(harness, Topic.ERASURE_COMPLETED)
    assert answer.found is False
    assert answer.records == []


async def test_inference_and_feedback_go_through_anonymization(harness):
    await harness.send(
        InferenceCompleted(
            request_id="req-1",
            model="tiny",
            model_version="2",
            prompt="I am Alice Johnson",
            text="Hello Alice Johnson",
            prompt_tokens=5,
            completion_tokens=3,
        )
    )
    await harness.send(
        FeedbackReceived(
            response_id="req-1",
            rating=-1,
            correction="Say hi to Bob Stone",
            comment="mail me: bob@stone.org",
        )
    )
    inference, feedback = decoded(harness, Topic.RECORDS_ANONYMIZED)
    assert inference.dataset == "inference.tiny"
    record = inference.records[0]
    assert record.record_id == "inference:req-1"
    assert "Alice" not in record.model_dump_json()
    assert record.metadata["prompt_tokens"] == 5
    assert record.metadata["model_version"] == "2"
    assert feedback.dataset == "feedback"
    assert "Bob" not in feedback.model_dump_json()
    assert "bob@" not in feedback.model_dump_json()
    assert feedback.records[0].metadata["rating"] == -1


async def test_bad_bytes_go_to_the_dlq_and_the_partition_flows(harness):
    await harness.broker.publish(b"\x00\xffgarbage", Topic.RECORDS_INGESTED.value)
    await harness.send(ingested(["Bob Stone"]))
    assert len(harness.of(Topic.RECORDS_INGESTED)) == 1  # the dlq twin got the garbage
    assert len(decoded(harness, Topic.RECORDS_ANONYMIZED)) == 1


async def test_missing_claim_is_dead_lettered_not_lost(harness):
    claim = ClaimCheck(uri="nowhere", sha256="0" * 64, size=10)
    await harness.send(
        RecordsIngested(dataset="d", request_id=uuid.uuid4(), batch_index=0, claim=claim, count=1)
    )
    assert len(harness.of(Topic.RECORDS_INGESTED)) == 1
    assert decoded(harness, Topic.RECORDS_ANONYMIZED) == []
    [headers] = harness.headers[Topic.RECORDS_INGESTED.value]
    assert headers["x-llmops-dlq-reason"] == "handler-failed"
    assert "not in the transit store" in headers["x-llmops-dlq-error"]


async def test_bad_input_texts_are_handled_not_crashed(harness):
    huge = "Alice Johnson filed a ticket. " * 10_000  # 300k characters: analyzed in chunks
    texts = ["", "\x00\x01\x02\ufffd binary", "Je m'appelle Bob Stone, j'habite à Lyon.", huge]
    await harness.send(ingested(texts))
    [out] = decoded(harness, Topic.RECORDS_ANONYMIZED)
    assert out.count == 4
    assert out.claim is not None  # past the claim threshold: the batch is in the store
    lines = harness.runtime.artifacts.get_bytes(out.claim).decode().splitlines()
    records = [AnonymizedRecord.model_validate_json(line) for line in lines]
    assert records[0].text == ""
    assert records[1].text == "\x00\x01\x02\ufffd binary"
    assert "Bob Stone" not in records[2].text
    assert "Alice" not in records[3].text
    assert records[3].text.count("<PERSON_") == 10_000


async def test_source_ids_are_carried_to_the_anonymized_records(harness):
    records = [
        Record(record_id="r0", text="Alice Johnson wrote.", source_id="t001"),
        Record(record_id="r1", text="No PII here."),
    ]
    await harness.send(
        RecordsIngested(
            dataset="tickets", request_id=uuid.uuid4(), batch_index=0, records=records, count=2
        )
    )
    [out] = decoded(harness, Topic.RECORDS_ANONYMIZED)
    assert [r.source_id for r in out.records] == ["t001", None]
