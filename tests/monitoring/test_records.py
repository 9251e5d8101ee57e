"""Monitoring reads claim-checked batches through the shared helper (shared/claims.py), as
ingestion and labeling do: the same records as inline ones, and a broken batch is named
without quoting its text."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.monitoring.config import MonitoringSettings
from services.monitoring.service import MonitoringService
from shared.claims import pack
from shared.events.privacy import AnonymizedRecord, RecordsAnonymized
from shared.storage import ArtifactStore
from tests.monitoring.fakes import HashEmbedder

pytestmark = pytest.mark.unit


def _records(n: int) -> list[AnonymizedRecord]:
    return [
        AnonymizedRecord(record_id=f"r{i}", text=f"prompt {i} <PERSON>", source_id=f"t{i}")
        for i in range(n)
    ]


def test_a_claim_checked_batch_reads_as_its_records(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path))
    service = MonitoringService(MonitoringSettings(), HashEmbedder(), read_claim=store.get_bytes)
    records = _records(5)
    inline, claim = pack(records, store, max_inline_bytes=10)
    assert claim is not None
    assert inline == []
    claimed = RecordsAnonymized(dataset="d", records=inline, claim=claim, count=5)
    assert service.records(claimed) == records
    direct = RecordsAnonymized(dataset="d", records=records, count=5)
    assert service.records(direct) == records


def test_a_broken_claimed_batch_is_named_not_quoted(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path))
    service = MonitoringService(MonitoringSettings(), HashEmbedder(), read_claim=store.get_bytes)
    claim = store.put_bytes(b'{"record_id": "r0", "text": "call jane@example.com"', "x")
    with pytest.raises(ValueError, match="not a list of records") as info:
        service.records(RecordsAnonymized(dataset="d", claim=claim, count=1))
    assert "jane" not in str(info.value)
