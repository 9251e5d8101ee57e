"""Every topic of the platform, its partition count, its event model and its DLQ twin."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from enum import StrEnum

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, TopicAlreadyExistsError

from shared import events as ev
from shared.settings import ServiceSettings

log = logging.getLogger(__name__)

DLQ_SUFFIX = ".dlq"
# Serving's channels beside the catalogue: a requester's reply topic (``shared.wire``) and
# the cancel channel every worker reads. Both are serving hops (``is_ephemeral``).
REPLY_PREFIX = "llmops.inference.replies."
CANCEL_TOPIC = "llmops.inference.cancels"


class Topic(StrEnum):
    INGEST_REQUESTED = "llmops.ingest.requested.v1"
    RECORDS_INGESTED = "llmops.records.ingested.v1"
    INGEST_PROGRESSED = "llmops.ingest.progressed.v1"
    INGEST_COMPLETED = "llmops.ingest.completed.v1"
    RECORDS_ANONYMIZED = "llmops.records.anonymized.v1"
    ERASURE_REQUESTED = "llmops.erasure.requested.v1"
    ERASURE_COMPLETED = "llmops.erasure.completed.v1"
    RECORDS_LABELED = "llmops.records.labeled.v1"
    DATASET_VERSIONED = "llmops.dataset.versioned.v1"
    TRAINING_REQUESTED = "llmops.training.requested.v1"
    TRAINING_PROGRESSED = "llmops.training.progressed.v1"
    MODEL_TRAINED = "llmops.model.trained.v1"
    MODEL_EVALUATED = "llmops.model.evaluated.v1"
    MODEL_PROMOTED = "llmops.model.promoted.v1"
    MODEL_ROLLED_BACK = "llmops.model.rolled-back.v1"
    INFERENCE_REQUESTED = "llmops.inference.requested.v1"
    INFERENCE_COMPLETED = "llmops.inference.completed.v1"
    FEEDBACK_RECEIVED = "llmops.feedback.received.v1"
    WORKER_HEARTBEAT = "llmops.worker.heartbeat.v1"
    DRIFT_DETECTED = "llmops.drift.detected.v1"
    ALERT_RAISED = "llmops.alert.raised.v1"
    AUDIT_RECORDED = "llmops.audit.recorded.v1"
    API_KEYS = "llmops.api-key.changed.v1"
    LABELING_PROJECT_REQUESTED = "llmops.labeling-project.requested.v1"

    @property
    def spec(self) -> TopicSpec:
        return SPECS[self]

    @property
    def event(self) -> type[ev.Event]:
        return self.spec.event

    @property
    def partitions(self) -> int:
        return self.spec.partitions

    @property
    def dlq(self) -> str:
        return f"{self.value}{DLQ_SUFFIX}"

    @classmethod
    def for_event(cls, event: type[ev.Event] | ev.Event) -> Topic:
        event_type = event.EVENT_TYPE
        for topic, spec in SPECS.items():
            if event_type == spec.event.EVENT_TYPE:
                return topic
        raise KeyError(f"no topic carries {event_type}")

    @classmethod
    def parse(cls, name: str) -> Topic:
        """A topic from its full name or a short alias like `ingest.requested`."""
        for topic in cls:
            if name in (topic.value, topic.value.removeprefix("llmops.").rsplit(".v", 1)[0]):
                return topic
        known = ", ".join(t.value for t in cls)
        raise ValueError(f"unknown topic {name!r}; known topics: {known}")


@dataclass(frozen=True)
class TopicSpec:
    event: type[ev.Event]
    partitions: int
    key: str
    description: str
    retention_ms: int | None = None  # short retention for the hops that carry raw text
    raw_text: bool = False  # carries raw text: its DLQ keeps a claim check, not the bytes
    compacted: bool = False  # keep the latest record per key for good (state, not a log)
    # request/reply hop: lives on the in-memory broker of the embedded stack (tansu's
    # durable fetch stalls at the tail of long partitions read with short waits:
    # docs/backbone.md); on a Kafka cluster the same cluster. Its DLQ stays on the main log.
    ephemeral: bool = False


# Hops that carry raw text (personal data) keep it an hour at most, and so do their DLQs.
RAW_RETENTION_MS = 3_600_000

SPECS: dict[Topic, TopicSpec] = {
    Topic.INGEST_REQUESTED: TopicSpec(
        ev.IngestRequested,
        3,
        "dataset",
        "Ingest commands (may carry inline raw records; short retention).",
        retention_ms=RAW_RETENTION_MS,
        raw_text=True,
    ),
    Topic.RECORDS_INGESTED: TopicSpec(
        ev.RecordsIngested,
        6,
        "dataset",
        "Clean raw batches (ingest hop only; short retention).",
        retention_ms=RAW_RETENTION_MS,
        raw_text=True,
    ),
    Topic.INGEST_PROGRESSED: TopicSpec(
        ev.IngestProgressed, 3, "dataset", "Ingest progress (rows read so far)."
    ),
    Topic.INGEST_COMPLETED: TopicSpec(ev.IngestCompleted, 3, "dataset", "Ingest reports."),
    Topic.RECORDS_ANONYMIZED: TopicSpec(
        ev.RecordsAnonymized, 6, "dataset", "Batches without personal data."
    ),
    Topic.ERASURE_REQUESTED: TopicSpec(ev.ErasureRequested, 1, "subject_ref", "Erasures."),
    Topic.ERASURE_COMPLETED: TopicSpec(
        ev.ErasureCompleted, 1, "subject_ref", "Per-service erasure answers."
    ),
    Topic.RECORDS_LABELED: TopicSpec(ev.RecordsLabeled, 3, "dataset", "Agreed labels."),
    Topic.DATASET_VERSIONED: TopicSpec(ev.DatasetVersioned, 3, "dataset", "Dataset versions."),
    Topic.TRAINING_REQUESTED: TopicSpec(ev.TrainingRequested, 3, "model_name", "Train commands."),
    Topic.TRAINING_PROGRESSED: TopicSpec(ev.TrainingProgressed, 3, "run_id", "Run progress."),
    Topic.MODEL_TRAINED: TopicSpec(ev.ModelTrained, 3, "model_name", "Trained versions."),
    Topic.MODEL_EVALUATED: TopicSpec(ev.ModelEvaluated, 3, "model_name", "Evaluations."),
    Topic.MODEL_PROMOTED: TopicSpec(ev.ModelPromoted, 1, "model_name", "Promotions."),
    Topic.MODEL_ROLLED_BACK: TopicSpec(ev.ModelRolledBack, 1, "model_name", "Rollbacks."),
    Topic.INFERENCE_REQUESTED: TopicSpec(
        ev.InferenceRequested,
        6,
        "request_id",
        "Gateway -> workers (raw, short retention; in memory on the embedded stack).",
        retention_ms=RAW_RETENTION_MS,
        raw_text=True,
        ephemeral=True,
    ),
    Topic.INFERENCE_COMPLETED: TopicSpec(
        ev.InferenceCompleted,
        6,
        "request_id",
        "Results + usage (raw text: read only by anonymization; short retention).",
        retention_ms=RAW_RETENTION_MS,
        raw_text=True,
    ),
    Topic.FEEDBACK_RECEIVED: TopicSpec(
        ev.FeedbackReceived,
        3,
        "response_id",
        "User feedback (raw text until anonymized; short retention).",
        retention_ms=RAW_RETENTION_MS,
        raw_text=True,
    ),
    Topic.WORKER_HEARTBEAT: TopicSpec(
        ev.WorkerHeartbeat,
        1,
        "worker_id",
        "Serving workers' liveness and served versions (in memory on the embedded stack).",
        retention_ms=600_000,
        ephemeral=True,
    ),
    Topic.DRIFT_DETECTED: TopicSpec(ev.DriftDetected, 1, "model_name", "Drift alerts."),
    Topic.ALERT_RAISED: TopicSpec(ev.AlertRaised, 1, "name", "SLO and health alerts."),
    Topic.AUDIT_RECORDED: TopicSpec(ev.AuditRecorded, 1, "action", "Privileged actions."),
    Topic.API_KEYS: TopicSpec(
        ev.ApiKeyChanged,
        1,
        "key_id",
        "The API key registry: each key's latest state (hashes only; compacted).",
        compacted=True,
    ),
    Topic.LABELING_PROJECT_REQUESTED: TopicSpec(
        ev.LabelingProjectRequested,
        1,
        "project",
        "Labeling project changes (signed commands).",
    ),
}


_EPHEMERAL = frozenset(t.value for t, spec in SPECS.items() if spec.ephemeral)


def is_ephemeral(name: str) -> bool:
    """Whether topic ``name`` is a serving hop: a catalogue topic marked ``ephemeral``, a
    reply topic (``llmops.inference.replies.<id>``) or the cancel channel. DLQ twins are
    not: dead letters are rare and kept on the main log."""
    return name in _EPHEMERAL or name == CANCEL_TOPIC or name.startswith(REPLY_PREFIX)


def bootstrap_for(name: str, settings: ServiceSettings) -> str:
    """The bootstrap servers that carry topic ``name``: the serving hops' broker for an
    ephemeral topic, the main log for every other (one and the same on a Kafka cluster
    unless LLMOPS_KAFKA_EPHEMERAL_BOOTSTRAP is set, and on an embedded log in memory)."""
    if is_ephemeral(name):
        return settings.ephemeral_bootstrap_servers
    return settings.bootstrap_servers


def all_topic_names() -> list[tuple[str, int]]:
    """Every topic and DLQ twin with its partition count."""
    names: list[tuple[str, int]] = []
    for topic in Topic:
        names.append((topic.value, topic.partitions))
        names.append((topic.dlq, 1))
    return names


def topic_configs(name: str) -> dict[str, str]:
    """Per-topic configuration; a DLQ twin keeps its topic's retention (a raw hop's DLQ
    holds claim checks to the transit store, not its bytes, and keeps them as briefly). A
    compacted topic keeps each key's latest record (its DLQ twin is an ordinary log)."""
    for topic in Topic:
        if name == topic.value and topic.spec.compacted:
            return {"cleanup.policy": "compact"}
        if name in (topic.value, topic.dlq) and topic.spec.retention_ms:
            return {"retention.ms": str(topic.spec.retention_ms)}
    return {}


async def ensure_topics(
    bootstrap: str,
    *,
    replication_factor: int = 1,
    extra: list[tuple[str, int]] | None = None,
    timeout_s: float = 30.0,
    client_options: dict[str, str] | None = None,
    ephemeral_bootstrap: str | None = None,
) -> list[str]:
    """Create every missing topic (and DLQ twin); returns the ones created. Idempotent.

    ``ephemeral_bootstrap``: where the serving hops live (``is_ephemeral``) when it is not
    ``bootstrap``: they are created there, every other topic on ``bootstrap``.
    ``client_options``: SASL keyword arguments; by default those of the environment's
    settings (``LLMOPS_KAFKA_SECURITY_PROTOCOL`` ...), empty on the embedded broker.
    """
    wanted = all_topic_names() + (extra or [])
    if ephemeral_bootstrap and ephemeral_bootstrap != bootstrap:
        hot = [(name, parts) for name, parts in wanted if is_ephemeral(name)]
        cold = [(name, parts) for name, parts in wanted if not is_ephemeral(name)]
        created = await _create_topics(
            bootstrap, cold, replication_factor, timeout_s, client_options
        )
        return created + await _create_topics(
            ephemeral_bootstrap, hot, replication_factor, timeout_s, client_options
        )
    return await _create_topics(bootstrap, wanted, replication_factor, timeout_s, client_options)


async def _create_topics(
    bootstrap: str,
    wanted: list[tuple[str, int]],
    replication_factor: int,
    timeout_s: float,
    client_options: dict[str, str] | None,
) -> list[str]:
    options = ServiceSettings().kafka_client_options() if client_options is None else client_options
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap,
        request_timeout_ms=10_000,
        **options,  # type: ignore[arg-type]
    )
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        try:
            await admin.start()
            break
        except KafkaConnectionError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.3)
    try:
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(
                name,
                num_partitions=parts,
                replication_factor=replication_factor,
                topic_configs=topic_configs(name),
            )
            for name, parts in wanted
            if name not in existing
        ]
        created: list[str] = []
        for new_topic in missing:  # one by one: an "already exists" must not hide the others
            try:
                await admin.create_topics([new_topic])
                created.append(new_topic.name)
            except TopicAlreadyExistsError:
                pass
        if created:
            log.info("created topics", extra={"topics": created})
        return created
    finally:
        await admin.close()
