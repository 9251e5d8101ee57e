"""Events of the ingestion stage."""

from __future__ import annotations

import uuid
from typing import Any, Literal

from pydantic import Field

from shared.events.envelope import ClaimCheck, Event, Payload
from shared.events.registry import register


class SourceSpec(Payload):
    """One place to read records from."""

    uri: str = Field(description="Local path, glob, or fsspec URL (s3://...).")
    format: Literal["auto", "jsonl", "csv", "parquet", "text"] = Field(
        "auto", description="File format; auto picks by extension."
    )
    text_mode: Literal["line", "file"] = Field(
        "line", description="For plain text: a document per line or per file."
    )


class FieldMapping(Payload):
    """Which input fields become the record's text, id and metadata."""

    text_field: str = Field("text", description="Field holding the document text.")
    id_field: str | None = Field(None, description="Field holding a source id, if any.")
    metadata_fields: list[str] = Field(
        default_factory=list, description="Fields copied into the record's metadata."
    )


class Record(Payload):
    """One cleaned document travelling between stages."""

    record_id: str = Field(
        description="Stable, non-identifying id: sha256 of (request id, source, line), "
        "shortened. It never lets anyone confirm a guessed text."
    )
    text: str = Field(description="The document text.")
    source: str = Field("", description="Where it came from (file or inline).")
    line: int | None = Field(None, description="Line or row number in the source, 1-based.")
    source_id: str | None = Field(None, description="Id given by the source, if any.")
    metadata: dict[str, Any] = Field(default_factory=dict, description="Kept source fields.")


@register("llmops.ingest.requested")
class IngestRequested(Event):
    """Command: read sources into a dataset."""

    dataset: str = Field(description="Dataset name the records belong to.", min_length=1)
    sources: list[SourceSpec] = Field(default_factory=list, description="Files/URLs to read.")
    records: list[dict[str, Any]] = Field(
        default_factory=list, description="Inline records (mapped like file rows)."
    )
    mapping: FieldMapping = Field(
        default_factory=FieldMapping, description="Field mapping of the input rows."
    )
    cleaning: dict[str, Any] = Field(
        default_factory=dict,
        description="Per-request overrides of the cleaning settings; the key `dedup` holds "
        "overrides of the dedup settings (threshold, num_perm, shingle_size, exact, near).",
    )
    cut_version: bool = Field(False, description="Cut an unlabeled dataset version at the end.")


@register("llmops.records.ingested")
class RecordsIngested(Event):
    """A bounded batch of clean, deduplicated records (raw text: the ingest hop only)."""

    dataset: str = Field(description="Dataset name.")
    request_id: uuid.UUID = Field(description="event_id of the IngestRequested.")
    batch_index: int = Field(description="0-based index of this batch within the request.")
    records: list[Record] = Field(
        default_factory=list, description="The records, unless they travel by claim check."
    )
    claim: ClaimCheck | None = Field(
        None, description="Claim check for a large batch: JSON lines of Record."
    )
    count: int = Field(description="Number of records in the batch.")
    read_so_far: int = Field(0, description="Rows read in the request when this batch was cut.")


@register("llmops.ingest.progressed")
class IngestProgressed(Event):
    """Progress of a running ingest request (rows read so far)."""

    dataset: str = Field(description="Dataset name.")
    request_id: uuid.UUID = Field(description="event_id of the IngestRequested.")
    read: int = Field(description="Rows read so far.")
    emitted: int = Field(description="Records published so far.")
    source: str = Field("", description="Source being read.")


class IngestError(Payload):
    """One bad input, with where it was."""

    source: str = Field(description="File or URL.")
    line: int | None = Field(None, description="Line or row number, 1-based, if known.")
    reason: str = Field(description="What was wrong, for a person.")


class FilteredRecord(Payload):
    """One row a quality filter dropped, with where it was (never its text)."""

    source: str = Field(description="File or URL.")
    line: int | None = Field(None, description="Line or row number, 1-based, if known.")
    rule: str = Field(description="The filter that dropped it, e.g. too_short, top_2gram.")


class RowLineage(Payload):
    """Where one row that reached dedup went: kept, or dropped as whose duplicate (no text)."""

    record_id: str = Field(description="The row's record id (see Record.record_id).")
    status: Literal["kept", "exact_duplicate", "near_duplicate"] = Field(
        description="Kept (published), or dropped as an exact or near duplicate."
    )
    source: str | None = Field(None, description="File or URL it was read from.")
    line: int | None = Field(None, description="Line or row number in the source, 1-based.")
    duplicate_of: str | None = Field(
        None, description="For a dropped duplicate: the kept record it duplicates."
    )
    similarity: float | None = Field(
        None, description="For a dropped duplicate: estimated Jaccard similarity (1.0 exact)."
    )


@register("llmops.ingest.completed")
class IngestCompleted(Event):
    """Report of one ingest request."""

    dataset: str = Field(description="Dataset name.")
    request_id: uuid.UUID = Field(description="event_id of the IngestRequested.")
    read: int = Field(0, description="Rows read from all sources.")
    emitted: int = Field(0, description="Records published downstream.")
    malformed: int = Field(0, description="Rows that could not be parsed.")
    exact_duplicates: int = Field(0, description="Rows dropped as exact duplicates.")
    near_duplicates: int = Field(0, description="Rows dropped as near duplicates.")
    filtered: dict[str, int] = Field(
        default_factory=dict, description="Rows dropped per cleaning filter."
    )
    cleaned: dict[str, int] = Field(
        default_factory=dict, description="Rows changed per cleaning step (kept rows too)."
    )
    filtered_records: list[FilteredRecord] = Field(
        default_factory=list,
        description="First filtered rows (capped like errors; `filtered` has every count).",
    )
    errors: list[IngestError] = Field(default_factory=list, description="First errors (capped).")
    error_count: int = Field(0, description="Total number of errors, beyond the cap too.")
    batches: int = Field(0, description="RecordsIngested batches published.")
    dataset_version: str | None = Field(
        None,
        description="Unused since versions are cut from anonymized records: see the "
        "DatasetVersioned caused by the request.",
    )
    failed: str | None = Field(
        None, description="Why the request as a whole could not run (bad settings), if so."
    )
    lineage: list[RowLineage] = Field(
        default_factory=list,
        description="Every row of the request that reached dedup, kept or dropped as a "
        "duplicate, with source and line: what the curator (labeling) puts in a version's "
        "lineage. Empty when it travels by `lineage_claim`.",
    )
    lineage_claim: ClaimCheck | None = Field(
        None,
        description="Claim check of a large lineage in the artifact store: JSON lines of "
        "RowLineage.",
    )
