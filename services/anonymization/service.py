"""Use cases of the service: events in, anonymized events and vault writes out.

Everything here depends on ports only; the handlers call one method each.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from services.anonymization import lineage
from services.anonymization.domain import AnonymizedDoc, Anonymizer, SourceDoc
from services.anonymization.ports import ArtifactReader, TransitReader, Vault
from shared.claims import decode_batch, pack
from shared.events import (
    AuditRecorded,
    ClaimCheck,
    DatasetVersioned,
    ErasureCompleted,
    ErasureRequested,
    FeedbackReceived,
    InferenceCompleted,
    ModelTrained,
    RecordsAnonymized,
    RecordsIngested,
)
from shared.events.ingest import Record
from shared.events.privacy import AnonymizedRecord, EntitySpan

log = logging.getLogger(__name__)
SERVICE = "anonymization"
FIELD_SEP = "#"


@dataclass
class Item:
    """A record to anonymize: its main text and any string leaves of its metadata."""

    record_id: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)
    source_id: str | None = None  # the source's own id (ticket t001): carried, not scanned


def _leaves(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], str]]:
    if isinstance(node, str):
        yield path, node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from _leaves(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _leaves(value, (*path, index))


def _replace_leaf(node: Any, path: tuple[Any, ...], value: str) -> Any:
    if not path:
        return value
    head, rest = path[0], path[1:]
    node[head] = _replace_leaf(node[head], rest, value)
    return node


class ClaimMissingError(LookupError):
    """A claim-checked raw batch is not (or no longer) in the transit store."""


class AnonymizationService:
    """``artifacts`` holds what this service writes (no PII); ``transit`` the raw batches."""

    def __init__(
        self,
        anonymizer: Anonymizer,
        artifacts: ArtifactReader,
        claim_bytes: int,
        transit: TransitReader,
    ) -> None:
        self.anonymizer = anonymizer
        self.artifacts = artifacts
        self.claim_bytes = claim_bytes
        self.transit = transit

    # -- anonymizing ---------------------------------------------------------------------
    def anonymize(self, items: list[Item], vault: Vault, dataset: str) -> list[AnonymizedRecord]:
        docs: list[SourceDoc] = []
        for item in items:
            docs.append(SourceDoc(item.record_id, item.text))
            for path, value in _leaves(item.metadata):
                field_id = ".".join(str(p) for p in path)
                docs.append(SourceDoc(f"{item.record_id}{FIELD_SEP}{field_id}", value))
        results = {doc.record_id: doc for doc in self.anonymizer.run(docs, vault, vault)}
        vault.save([doc.vault for doc in results.values() if doc.vault is not None], dataset)
        return [self._record(item, results) for item in items]

    def _record(self, item: Item, results: dict[str, AnonymizedDoc]) -> AnonymizedRecord:
        main = results[item.record_id]
        metadata = json.loads(json.dumps(item.metadata, default=str))
        subjects = set(main.subjects)
        for path, _ in list(_leaves(metadata)):
            doc = results[f"{item.record_id}{FIELD_SEP}{'.'.join(str(p) for p in path)}"]
            metadata = _replace_leaf(metadata, path, doc.text)
            subjects |= set(doc.subjects)
        spans = [
            EntitySpan(
                entity_type=f.entity_type,
                start=f.start,
                end=f.end,
                score=f.score,
                operator=f.operator,
            )
            for f in main.findings
        ]
        return AnonymizedRecord(
            record_id=item.record_id,
            text=main.text,
            entities=spans,
            subjects=sorted(s for s in subjects if not s.startswith("record:")),
            metadata=metadata,
            source_id=item.source_id,
        )

    def _batch_event(
        self, cause: Any, dataset: str, records: list[AnonymizedRecord], **fields: Any
    ) -> RecordsAnonymized:
        counts: dict[str, int] = {}
        for record in records:
            for span in record.entities:
                counts[span.entity_type] = counts.get(span.entity_type, 0) + 1
        inline, claim = pack(records, self.artifacts, self.claim_bytes)
        return cause.caused(  # type: ignore[no-any-return]
            RecordsAnonymized,
            dataset=dataset,
            records=inline,
            claim=claim,
            count=len(records),
            entity_counts=counts,
            **fields,
        )

    def load_records(self, event: RecordsIngested) -> list[Record]:
        if event.claim is None:
            return list(event.records)
        try:
            raw = self.transit.get_bytes(event.claim)
        except FileNotFoundError:
            raise ClaimMissingError(
                f"claim-checked batch {event.claim.sha256[:16]} is not in the transit store "
                "(never written there, or already consumed and deleted)"
            ) from None
        return decode_batch(raw, Record)

    def on_records_ingested(self, event: RecordsIngested, vault: Vault) -> RecordsAnonymized:
        items = [
            Item(r.record_id, r.text, dict(r.metadata), r.source_id)
            for r in self.load_records(event)
        ]
        records = self.anonymize(items, vault, event.dataset)
        return self._batch_event(
            event,
            event.dataset,
            records,
            request_id=event.request_id,
            batch_index=event.batch_index,
        )

    def consumed(self, event: RecordsIngested) -> None:
        """Delete the raw batch once its anonymized twin is committed (the hop is done)."""
        if event.claim is None:
            return
        try:
            self.transit.delete(event.claim)
        except Exception as exc:  # a leftover object is retried by nobody: say so loudly
            log.error(
                "raw batch not deleted from the transit store",
                extra={"sha256": event.claim.sha256, "error": repr(exc)},
            )

    def on_inference_completed(self, event: InferenceCompleted, vault: Vault) -> RecordsAnonymized:
        dataset = f"inference.{event.model}"
        usage = {
            "model": event.model,
            "model_version": event.model_version,
            "prompt": event.prompt,
            "finish_reason": event.finish_reason,
            "prompt_tokens": event.prompt_tokens,
            "completion_tokens": event.completion_tokens,
            "latency_ms": event.latency_ms,
            "ttft_ms": event.ttft_ms,
            "error": event.error,
            "request_id": event.request_id,
        }
        item = Item(f"inference:{event.request_id}", event.text, usage)
        return self._batch_event(event, dataset, self.anonymize([item], vault, dataset))

    def on_feedback_received(self, event: FeedbackReceived, vault: Vault) -> RecordsAnonymized:
        metadata = {
            "response_id": event.response_id,
            "rating": event.rating,
            "comment": event.comment,
            "key_id": event.key_id,
            "extra": dict(event.extra),
            "session": str(event.session) if event.session else None,
        }
        item = Item(f"feedback:{event.event_id}", event.correction or "", metadata)
        return self._batch_event(event, "feedback", self.anonymize([item], vault, "feedback"))

    # -- erasure and lineage ---------------------------------------------------------------
    def on_erasure_requested(
        self, event: ErasureRequested, vault: Vault
    ) -> tuple[ErasureCompleted, AuditRecorded]:
        outcome = vault.erase(event.subject_ref, str(event.event_id))
        records = sorted({r.split(FIELD_SEP, 1)[0] for r in outcome.records})
        answer = event.caused(
            ErasureCompleted,
            request_id=event.event_id,
            subject_ref=event.subject_ref,
            service=SERVICE,
            found=outcome.found,
            records=records,
            dataset_versions=outcome.dataset_versions,
            model_versions=outcome.model_versions,
            removed=outcome.removed,
            retrain=event.retrain,
        )
        audit = event.caused(
            AuditRecorded,
            action="erase",
            actor=event.producer,
            allowed=True,
            target=f"subject:{event.subject_ref[:12]}",
            details={"found": outcome.found, "records": len(records), "retrain": event.retrain},
        )
        return answer, audit

    def on_dataset_versioned(self, event: DatasetVersioned, vault: Vault) -> int:
        manifest = self.artifacts.get_bytes(event.manifest)
        record_ids = lineage.record_ids_in(manifest)
        # shards are read only when the manifest does not list the ids itself
        for claim in [] if record_ids else lineage.nested_claims(manifest):
            try:
                shard = self.artifacts.get_bytes(ClaimCheck.model_validate(claim))
            except Exception as exc:  # an unreadable shard adds nothing; the rest still counts
                log.warning("manifest shard unreadable", extra={"error": repr(exc)})
                continue
            record_ids += lineage.record_ids_in(shard)
        return vault.add_dataset_version(event.dataset, event.version, record_ids)

    def on_model_trained(self, event: ModelTrained, vault: Vault) -> None:
        model = f"{event.model_name}@{event.model_version}"
        vault.add_model_version(event.dataset, event.dataset_version, model)
