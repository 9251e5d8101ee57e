"""The per-row work of an ingest: map fields, clean, filter, dedup, count, keep lineage.

Pure: rows in, kept records + lineage + new index entries out. The service owns reading,
persistence and publishing.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import numpy as np

from services.ingestion.domain.cleaning import CleaningConfig, LanguageDetector, clean
from services.ingestion.domain.dedup import DedupConfig, LSHIndex, fingerprint, signatures
from shared.events.ingest import FieldMapping, FilteredRecord, IngestError, Record

MAX_REPORTED_ERRORS = 100


@dataclass
class RawRow:
    """One row as a reader produced it: fields, a plain text, or why it is unreadable."""

    source: str
    line: int | None
    fields: Any = None
    text: str | None = None
    error: str | None = None
    notice: str | None = None
    file_level: bool = False  # a problem with a whole source, not a row


@dataclass
class LineageEntry:
    record_id: str
    status: str  # kept | exact_duplicate | near_duplicate
    source: str
    line: int | None
    duplicate_of: str | None = None
    similarity: float | None = None


@dataclass
class Report:
    """Counters of one request; serializable for checkpoints."""

    read: int = 0
    emitted: int = 0
    malformed: int = 0
    exact_duplicates: int = 0
    near_duplicates: int = 0
    filtered: Counter[str] = field(default_factory=Counter)
    cleaned: Counter[str] = field(default_factory=Counter)
    errors: list[IngestError] = field(default_factory=list)
    error_count: int = 0
    batches: int = 0
    filtered_records: list[FilteredRecord] = field(default_factory=list)

    def error(self, source: str, line: int | None, reason: str) -> None:
        self.error_count += 1
        if len(self.errors) < MAX_REPORTED_ERRORS:
            self.errors.append(IngestError(source=source, line=line, reason=reason))

    def filter(self, source: str, line: int | None, rule: str) -> None:
        """Count a filtered row; the first ones are listed with their rule, like errors."""
        self.filtered[rule] += 1
        if len(self.filtered_records) < MAX_REPORTED_ERRORS:
            self.filtered_records.append(FilteredRecord(source=source, line=line, rule=rule))

    def to_dict(self) -> dict[str, Any]:
        return {
            "read": self.read,
            "emitted": self.emitted,
            "malformed": self.malformed,
            "exact_duplicates": self.exact_duplicates,
            "near_duplicates": self.near_duplicates,
            "filtered": dict(self.filtered),
            "cleaned": dict(self.cleaned),
            "errors": [e.model_dump() for e in self.errors],
            "filtered_records": [f.model_dump() for f in self.filtered_records],
            "error_count": self.error_count,
            "batches": self.batches,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Report:
        lists = ("filtered", "cleaned", "errors", "filtered_records")
        return cls(
            **{k: v for k, v in data.items() if k not in lists},
            filtered=Counter(data.get("filtered", {})),
            cleaned=Counter(data.get("cleaned", {})),
            errors=[IngestError.model_validate(e) for e in data.get("errors", [])],
            filtered_records=[
                FilteredRecord.model_validate(f) for f in data.get("filtered_records", [])
            ],
        )


@dataclass
class ChunkResult:
    kept: list[Record] = field(default_factory=list)
    lineage: list[LineageEntry] = field(default_factory=list)
    fingerprints: list[tuple[str, str]] = field(default_factory=list)
    signatures: list[tuple[str, np.ndarray]] = field(default_factory=list)


def record_id(request_id: str, source: str, line: int | None) -> str:
    """Stable across redeliveries of a request, and says nothing about the text."""
    return hashlib.sha256(f"{request_id}\0{source}\0{line or 0}".encode()).hexdigest()[:32]


def _json_safe(value: Any) -> Any:
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, datetime | date | Decimal):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return str(value)


def _type_name(value: Any) -> str:
    return {
        type(None): "null",
        bool: "a boolean",
        int: "a number",
        float: "a number",
        list: "a list",
        dict: "an object",
    }.get(type(value), type(value).__name__)


class Pipeline:
    def __init__(
        self,
        *,
        request_id: str,
        mapping: FieldMapping,
        cleaning: CleaningConfig,
        dedup: DedupConfig,
        exact_index: dict[str, str],
        lsh: LSHIndex,
        fingerprint_key: bytes,
        detect_language: LanguageDetector | None = None,
    ) -> None:
        self.request_id = request_id
        self.mapping = mapping
        self.cleaning = cleaning
        self.dedup = dedup
        self.exact_index = exact_index
        self.lsh = lsh
        self.key = fingerprint_key
        self.detect_language = detect_language

    def _text_of(self, row: RawRow, report: Report) -> str | None:
        if row.error is not None:
            report.malformed += 1
            report.error(row.source, row.line, row.error)
            return None
        if row.notice is not None:
            report.error(row.source, row.line, row.notice)
        text: Any = None
        problem: str | None = None
        if row.text is not None:
            text = row.text
        else:
            name = self.mapping.text_field
            if not isinstance(row.fields, dict):
                reason = f"row is {_type_name(row.fields)}, not an object with a '{name}' field"
                text, problem = None, reason
            elif name not in row.fields:
                text, problem = None, f"missing text field '{name}'"
            else:
                text = row.fields[name]
                problem = (
                    f"text field '{name}' is {_type_name(text)}, not a string"
                    if not isinstance(text, str)
                    else None
                )
            if problem is not None:
                report.malformed += 1
                report.error(row.source, row.line, problem)
                return None
        if not text.strip():
            report.malformed += 1
            report.error(row.source, row.line, "empty text")
            return None
        return str(text)

    def _record(self, row: RawRow, rid: str, text: str) -> Record:
        fields = row.fields if isinstance(row.fields, dict) else {}
        source_id = fields.get(self.mapping.id_field) if self.mapping.id_field else None
        metadata = {
            name: _json_safe(fields[name])
            for name in self.mapping.metadata_fields
            if name in fields
        }
        return Record(
            record_id=rid,
            text=text,
            source=row.source,
            line=row.line,
            source_id=None if source_id is None else str(source_id),
            metadata=metadata,
        )

    def process(self, rows: list[RawRow], report: Report) -> ChunkResult:
        """Run rows through mapping, cleaning, filters and dedup; updates ``report``."""
        result = ChunkResult()
        candidates: list[tuple[RawRow, str, str]] = []
        words: list[list[str] | None] = []  # each candidate's words, as the filters read them
        for row in rows:
            if row.file_level:
                report.error(row.source, row.line, row.error or "unreadable source")
                continue
            report.read += 1
            text = self._text_of(row, report)
            if text is None:
                continue
            cleaned = clean(text, self.cleaning, self.detect_language)
            report.cleaned.update(cleaned.changed)
            if cleaned.dropped_by is not None:
                report.filter(row.source, row.line, cleaned.dropped_by)
                continue
            candidates.append((row, record_id(self.request_id, row.source, row.line), cleaned.text))
            words.append(cleaned.words)
        # Exact duplicates first: only the first text of each fingerprint needs a MinHash.
        prints = [fingerprint(text, self.key) for _row, _rid, text in candidates]
        first_of: dict[str, int] = {}
        for index, fp in enumerate(prints):
            first_of.setdefault(fp, index)
        unique = [
            i for i, fp in enumerate(prints) if first_of[fp] == i and fp not in self.exact_index
        ]
        sig_at: dict[int, int] = {i: n for n, i in enumerate(unique)}
        sigs = (
            signatures([candidates[i][2] for i in unique], self.dedup, [words[i] for i in unique])
            if self.dedup.near
            else None
        )
        for index, (row, rid, text) in enumerate(candidates):
            fp = prints[index]
            if self.dedup.exact and fp in self.exact_index:
                report.exact_duplicates += 1
                result.lineage.append(
                    LineageEntry(
                        rid, "exact_duplicate", row.source, row.line, self.exact_index[fp], 1.0
                    )
                )
                continue
            if sigs is not None:
                signature = sigs[sig_at[first_of[fp]]]
                near = self.lsh.query(signature)
                if near is not None:
                    report.near_duplicates += 1
                    result.lineage.append(
                        LineageEntry(
                            rid, "near_duplicate", row.source, row.line, near.kept, near.similarity
                        )
                    )
                    continue
                self.lsh.insert(rid, signature)
                result.signatures.append((rid, signature))
            self.exact_index[fp] = rid
            result.fingerprints.append((fp, rid))
            result.kept.append(self._record(row, rid, text))
            result.lineage.append(LineageEntry(rid, "kept", row.source, row.line))
        report.emitted += len(result.kept)
        return result
