"""Ingestion's side of erasure, after anonymization has named the subject's records.

Removes what ingestion holds for those records and their duplicate clusters (exact
fingerprints, MinHash signatures; lineage keeps only ids). Ingestion holds no anonymized
copies and cuts no dataset versions (labeling, the curator, does and answers for them), so
its answer lists no versions.
"""

from __future__ import annotations

from services.ingestion.ports import ErasureStore
from shared.bus.store import UnitOfWork
from shared.events.privacy import ErasureCompleted

ANSWERS_TO = "anonymization"


def answer(
    store: ErasureStore, uow: UnitOfWork, event: ErasureCompleted
) -> ErasureCompleted | None:
    """Ingestion's ErasureCompleted for anonymization's one; None for any other service's."""
    if event.service != ANSWERS_TO:
        return None
    record_ids = sorted(store.held(uow, event.records))
    removed = store.forget(uow, record_ids) if record_ids else {}
    return event.caused(  # type: ignore[no-any-return]
        ErasureCompleted,
        request_id=event.request_id,
        subject_ref=event.subject_ref,
        service=uow.producer,
        found=bool(record_ids),
        records=record_ids,
        dataset_versions=[],  # versions are labeling's: its own answer lists them
        removed=removed,
    )
