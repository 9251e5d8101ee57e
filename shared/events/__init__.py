"""The typed event contract: every event of the catalogue, and the registry."""

from shared.events.envelope import ClaimCheck, Event, Payload
from shared.events.evaluation import ModelEvaluated, ModelPromoted, ModelRolledBack
from shared.events.ingest import (
    IngestCompleted,
    IngestProgressed,
    IngestRequested,
    RecordsIngested,
)
from shared.events.keys import ApiKeyChanged
from shared.events.labeling import DatasetVersioned, LabelingProjectRequested, RecordsLabeled
from shared.events.monitoring import AlertRaised, AuditRecorded, DriftDetected
from shared.events.privacy import ErasureCompleted, ErasureRequested, RecordsAnonymized
from shared.events.registry import EventDecodeError, all_models, decode, register, upcaster
from shared.events.serving import (
    FeedbackReceived,
    InferenceCompleted,
    InferenceRequested,
    WorkerHeartbeat,
)
from shared.events.training import ModelTrained, TrainingProgressed, TrainingRequested

__all__ = [
    "AlertRaised",
    "ApiKeyChanged",
    "AuditRecorded",
    "ClaimCheck",
    "DatasetVersioned",
    "DriftDetected",
    "ErasureCompleted",
    "ErasureRequested",
    "Event",
    "EventDecodeError",
    "FeedbackReceived",
    "InferenceCompleted",
    "InferenceRequested",
    "IngestCompleted",
    "IngestProgressed",
    "IngestRequested",
    "LabelingProjectRequested",
    "ModelEvaluated",
    "ModelPromoted",
    "ModelRolledBack",
    "ModelTrained",
    "Payload",
    "RecordsAnonymized",
    "RecordsIngested",
    "RecordsLabeled",
    "TrainingProgressed",
    "TrainingRequested",
    "WorkerHeartbeat",
    "all_models",
    "decode",
    "register",
    "upcaster",
]
