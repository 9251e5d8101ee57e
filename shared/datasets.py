"""Dataset versions: immutable, content-addressed snapshots plus a manifest.

A version is two or three artifacts in the content-addressed store: the records as JSON
lines, an optional lineage file (JSON lines, one entry per record), and the manifest JSON
that points at them. The version id is derived from what the version holds (dataset,
parent, data sha256, labeled), so cutting the same content twice gives the same id.
Ingestion cuts unlabeled versions (of anonymized records: raw text never reaches a
version); labeling cuts labeled ones with the same functions.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

from pydantic import ConfigDict, Field

from shared.events.envelope import TOLERANT, ClaimCheck, Payload
from shared.storage.artifacts import ArtifactStore

MANIFEST_MEDIA_TYPE = "application/vnd.llmops.dataset-manifest+json"
RECORDS_MEDIA_TYPE = "application/jsonl"


class DatasetManifest(Payload):
    """What a dataset version is: its records, where they came from, how to verify them."""

    dataset: str = Field(description="Dataset name.")
    version: str = Field(description="Version id: sha256 prefix of the version's content.")
    parent: str | None = Field(None, description="Version this one was derived from.")
    created_at: datetime = Field(description="When the version was cut (UTC).")
    record_count: int = Field(description="Number of records.")
    schema_: dict[str, str] = Field(
        alias="schema", description="Field name -> JSON type seen in the records."
    )
    record_ids: list[str] = Field(description="Ids of the records, in file order.")
    created_by: list[str] = Field(
        default_factory=list, description="Event ids (requests) that created the records."
    )
    data: ClaimCheck = Field(description="The records as JSON lines.")
    sha256: str = Field(description="sha256 of the data file (same as data.sha256).")
    lineage: ClaimCheck | None = Field(None, description="Per-record lineage as JSON lines.")
    labeled: bool = Field(False, description="Whether records carry labels.")
    producer: str = Field("", description="Service that cut the version.")
    task: str | None = Field(
        None, description="Labeled versions: the project's task (see LabeledExample.task)."
    )
    splits: dict[str, int] = Field(
        default_factory=dict, description="Labeled versions: split name -> record count."
    )
    details: dict[str, Any] = Field(
        default_factory=dict,
        description="Producer-specific facts at cut time (project, label schema, agreement, "
        "annotators, label provenance counts...).",
    )


SPLITS = ("train", "validation", "test")
TASKS = ("classification", "multilabel", "spans", "response", "rating", "preference")


class LabeledExample(Payload):
    """One record of a labeled dataset version: the contract between labeling (which cuts
    it), training (which learns from it) and evaluation (which scores on its test split).

    Every task is also expressed as generation, so one trainer and one evaluator serve all:
    SFT learns ``prompt -> completion``; preference tuning (DPO) learns from ``prompt``,
    ``chosen`` and ``rejected``. ``label`` keeps the task's native form (a class, a list of
    classes, spans, a rating), ``meta`` the record's metadata for fairness slices.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    record_id: str = Field(description="Record id (keyed hash, as in RecordsAnonymized).")
    source_id: str | None = Field(None, description="The user's own id (e.g. ticket t001).")
    split: str = Field(description="train, validation or test.")
    task: str = Field(description="One of TASKS.")
    prompt: str = Field(description="Model input (anonymized).")
    completion: str | None = Field(None, description="Expected output (SFT target).")
    chosen: str | None = Field(None, description="Preferred answer (preference task).")
    rejected: str | None = Field(None, description="Rejected answer (preference task).")
    label: Any = Field(None, description="The final label in the task's native form.")
    provenance: str = Field("human", description="human, rule, model or adjudicated.")
    meta: dict[str, Any] = Field(default_factory=dict, description="Record metadata.")


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def version_id(dataset: str, parent: str | None, data_sha256: str, labeled: bool) -> str:
    key = json.dumps([dataset, parent, data_sha256, labeled]).encode()
    return hashlib.sha256(key).hexdigest()[:16]


class _Collector:
    """Streams records to JSON lines while collecting ids and schema."""

    def __init__(self, records: Iterable[dict[str, Any]]) -> None:
        self.records = records
        self.ids: list[str] = []
        self.schema: dict[str, str] = {}

    def chunks(self) -> Iterator[bytes]:
        buffer: list[bytes] = []
        size = 0
        for record in self.records:
            self.ids.append(str(record["record_id"]))
            for name, value in record.items():
                seen = _json_type(value)
                known = self.schema.setdefault(name, seen)
                if known != seen and "null" not in (known, seen):
                    self.schema[name] = "mixed"
                elif known == "null":
                    self.schema[name] = seen
            line = json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"
            buffer.append(line.encode())
            size += len(buffer[-1])
            if size >= 1 << 20:
                yield b"".join(buffer)
                buffer, size = [], 0
        if buffer:
            yield b"".join(buffer)


def cut_version(
    store: ArtifactStore,
    dataset: str,
    records: Iterable[dict[str, Any]],
    *,
    parent: str | None = None,
    created_by: Iterable[str] = (),
    lineage: Iterable[dict[str, Any]] | None = None,
    labeled: bool = False,
    producer: str = "",
    task: str | None = None,
    splits: dict[str, int] | None = None,
    details: dict[str, Any] | None = None,
) -> tuple[DatasetManifest, ClaimCheck]:
    """Write records (each with a ``record_id``) and a manifest; returns both.

    Records stream to the store, so memory holds the ids, not the texts.
    """
    collector = _Collector(records)
    data = store.put_chunks(collector.chunks(), RECORDS_MEDIA_TYPE)
    lineage_claim = None
    if lineage is not None:
        lines = (
            (json.dumps(entry, ensure_ascii=False, separators=(",", ":")) + "\n").encode()
            for entry in lineage
        )
        lineage_claim = store.put_chunks(lines, RECORDS_MEDIA_TYPE)
    manifest = DatasetManifest(
        dataset=dataset,
        version=version_id(dataset, parent, data.sha256, labeled),
        parent=parent,
        created_at=datetime.now(UTC),
        record_count=len(collector.ids),
        schema=collector.schema,
        record_ids=collector.ids,
        created_by=sorted(set(created_by)),
        data=data,
        sha256=data.sha256,
        lineage=lineage_claim,
        labeled=labeled,
        producer=producer,
        task=task,
        splits=splits or {},
        details=details or {},
    )
    claim = store.put_bytes(manifest_bytes(manifest), MANIFEST_MEDIA_TYPE)
    return manifest, claim


def manifest_bytes(manifest: DatasetManifest) -> bytes:
    return manifest.model_dump_json(by_alias=True, indent=2).encode()


def load_manifest(store: ArtifactStore, claim: ClaimCheck) -> DatasetManifest:
    """Read and verify a manifest (sha256 checked)."""
    return DatasetManifest.model_validate_json(store.get_bytes(claim), context=TOLERANT)


def _jsonl(store: ArtifactStore, claim: ClaimCheck) -> Iterator[dict[str, Any]]:
    pending = b""
    for chunk in store.iter_chunks(claim):
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            if line.strip():
                yield json.loads(line)
    if pending.strip():
        yield json.loads(pending)


def iter_records(store: ArtifactStore, manifest: DatasetManifest) -> Iterator[dict[str, Any]]:
    """The version's records, streamed and verified against the manifest's sha256."""
    return _jsonl(store, manifest.data)


def iter_examples(store: ArtifactStore, manifest: DatasetManifest) -> Iterator[LabeledExample]:
    """A labeled version's records as typed examples (unknown fields ignored)."""
    for record in iter_records(store, manifest):
        yield LabeledExample.model_validate(record)


def iter_lineage(store: ArtifactStore, manifest: DatasetManifest) -> Iterator[dict[str, Any]]:
    return _jsonl(store, manifest.lineage) if manifest.lineage is not None else iter(())


def diff(old: DatasetManifest, new: DatasetManifest) -> dict[str, list[str]]:
    """Record ids added and removed from ``old`` to ``new``."""
    before, after = set(old.record_ids), set(new.record_ids)
    return {
        "added": [rid for rid in new.record_ids if rid not in before],
        "removed": [rid for rid in old.record_ids if rid not in after],
    }


def parse_ref(ref: str) -> tuple[str, str | None]:
    """``NAME`` or ``NAME@VERSION`` -> (name, version or None)."""
    name, _, version = ref.partition("@")
    if not name:
        raise ValueError(f"{ref!r}: expected NAME or NAME@VERSION")
    return name, version or None
