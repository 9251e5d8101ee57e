"""Events of the labeling stage."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from shared.events.envelope import ClaimCheck, Event, Payload
from shared.events.registry import register


class LabeledRecord(Payload):
    """A record with its agreed label."""

    record_id: str = Field(description="Id of the record.")
    text: str = Field(description="Anonymized text.")
    label: Any = Field(description="The agreed label (class, span list, completion...).")
    annotators: int = Field(1, description="How many annotators labeled it.")
    agreement: float | None = Field(None, description="Agreement score 0..1, if several.")


@register("llmops.records.labeled")
class RecordsLabeled(Event):
    """Records whose labels were agreed."""

    dataset: str = Field(description="Dataset name.")
    project: str = Field(description="Labeling project.")
    records: list[LabeledRecord] = Field(default_factory=list, description="The records.")
    count: int = Field(description="Number of records.")


@register("llmops.dataset.versioned")
class DatasetVersioned(Event):
    """An immutable, content-addressed dataset version was cut."""

    dataset: str = Field(description="Dataset name.")
    version: str = Field(description="Version id (sha256 prefix of the manifest).")
    parent: str | None = Field(None, description="Parent version, if any.")
    records: int = Field(description="Record count.")
    manifest: ClaimCheck = Field(description="The manifest in the artifact store.")
    labeled: bool = Field(False, description="Whether records carry labels.")


@register("llmops.labeling-project.requested")
class LabelingProjectRequested(Event):
    """A command: create or update a labeling project (a signed command: the CLI signs it
    with the user's key, the labeling API with its service key for the caller it
    authenticated). The labeling service applies it once and records the outcome."""

    project: str = Field(description="Project name (the spec's name).")
    spec: dict[str, Any] = Field(description="The project definition (as in its YAML file).")
    requested_by: str | None = Field(
        None,
        description="Who asked, when a service signs on their behalf (the labeling API: the "
        "caller's key name); a person's own signature names them in authority.principal.",
    )
