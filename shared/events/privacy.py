"""Events of the anonymization stage and erasure."""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import Field

from shared.events.envelope import ClaimCheck, Event, Payload
from shared.events.registry import register


class EntitySpan(Payload):
    """Where a PII entity was found (never its value)."""

    entity_type: str = Field(description="Presidio entity type, e.g. PERSON.")
    start: int = Field(description="Start offset in the anonymized text.")
    end: int = Field(description="End offset in the anonymized text.")
    score: float = Field(description="Detector confidence 0..1.")
    operator: str = Field(description="Operator applied: pseudonym, mask, redact, hash, encrypt.")


class AnonymizedRecord(Payload):
    """A record whose detected personal data has been replaced."""

    record_id: str = Field(description="Id of the source record.")
    text: str = Field(description="Anonymized text.")
    entities: list[EntitySpan] = Field(default_factory=list, description="Entities replaced.")
    subjects: list[str] = Field(
        default_factory=list, description="Keyed subject ids (never identifiers)."
    )
    metadata: dict[str, Any] = Field(default_factory=dict, description="Carried metadata.")
    source_id: str | None = Field(
        None, description="The source's own id (e.g. ticket t001), as ingested."
    )


@register("llmops.records.anonymized")
class RecordsAnonymized(Event):
    """A batch of anonymized records."""

    dataset: str = Field(description="Dataset name.")
    request_id: uuid.UUID | None = Field(None, description="Ingest request, if any.")
    batch_index: int = Field(0, description="Index of the source batch.")
    records: list[AnonymizedRecord] = Field(default_factory=list, description="The records.")
    claim: ClaimCheck | None = Field(None, description="Claim check for a large batch.")
    count: int = Field(description="Number of records.")
    entity_counts: dict[str, int] = Field(default_factory=dict, description="Entities by type.")


@register("llmops.erasure.requested")
class ErasureRequested(Event):
    """Command: forget one data subject."""

    subject_ref: str = Field(
        description="Keyed hash of the subject's identifier (the CLI derives it; never raw)."
    )
    retrain: bool = Field(False, description="Cut a new dataset version and retrain afterwards.")


@register("llmops.erasure.completed")
class ErasureCompleted(Event):
    """One service's answer to an erasure request."""

    request_id: uuid.UUID = Field(description="event_id of the ErasureRequested.")
    subject_ref: str = Field(description="The subject erased.")
    service: str = Field(description="Which service answers.")
    found: bool = Field(description="Whether anything was held for the subject.")
    records: list[str] = Field(default_factory=list, description="Record ids that held it.")
    dataset_versions: list[str] = Field(default_factory=list, description="Versions affected.")
    model_versions: list[str] = Field(default_factory=list, description="Models trained on it.")
    removed: dict[str, int] = Field(default_factory=dict, description="What was removed, by kind.")
    retrain: bool = Field(
        False, description="The request asked for the affected models to be retrained."
    )
