"""Unit tier: dataset versions are immutable, content-addressed, verifiable, diffable."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.datasets import (
    cut_version,
    diff,
    iter_lineage,
    iter_records,
    load_manifest,
    parse_ref,
)
from shared.storage import ArtifactIntegrityError, ArtifactStore

pytestmark = pytest.mark.unit

RECORDS = [
    {"record_id": "r1", "text": "first", "metadata": {"lang": "en"}},
    {"record_id": "r2", "text": "second", "metadata": {}},
]


def test_a_version_is_content_addressed_and_round_trips(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path / "artifacts"))
    manifest, claim = cut_version(
        store, "tickets", RECORDS, created_by=["req-1"], lineage=[{"record_id": "r1"}]
    )
    again, _ = cut_version(store, "tickets", RECORDS, created_by=["req-1"])
    assert manifest.version == again.version  # same content, same id
    loaded = load_manifest(store, claim)
    assert loaded == manifest
    assert loaded.record_count == 2
    assert loaded.record_ids == ["r1", "r2"]
    assert loaded.schema_ == {"record_id": "string", "text": "string", "metadata": "object"}
    assert loaded.sha256 == loaded.data.sha256
    assert list(iter_records(store, loaded)) == RECORDS
    assert list(iter_lineage(store, loaded)) == [{"record_id": "r1"}]


def test_child_versions_diff_against_their_parent(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path))
    parent, _ = cut_version(store, "tickets", RECORDS)
    child, _ = cut_version(
        store,
        "tickets",
        [RECORDS[1], {"record_id": "r3", "text": "third"}],
        parent=parent.version,
    )
    assert child.parent == parent.version
    assert child.version != parent.version
    assert diff(parent, child) == {"added": ["r3"], "removed": ["r1"]}


def test_tampered_data_is_detected(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path))
    manifest, _ = cut_version(store, "tickets", RECORDS)
    path = Path(manifest.data.uri)
    path.chmod(0o644)
    path.write_bytes(path.read_bytes().replace(b"first", b"FIRST"))
    with pytest.raises(ArtifactIntegrityError):
        list(iter_records(store, manifest))


def test_refs() -> None:
    assert parse_ref("tickets") == ("tickets", None)
    assert parse_ref("tickets@abc") == ("tickets", "abc")
    with pytest.raises(ValueError, match="NAME"):
        parse_ref("@abc")


def test_datasets_show_finds_a_record_by_its_source_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from typer.testing import CliRunner

    from services.ingestion import cli

    store = ArtifactStore(str(tmp_path))
    lineage = [
        {"record_id": "r1", "source_id": "t001", "request_id": "q", "source": "a.jsonl"},
        {"record_id": "r2", "source_id": "t002", "request_id": "q", "source": "a.jsonl"},
    ]
    for entry in lineage:
        entry.update(line=int(entry["source_id"][-1]), duplicates=[])
    manifest, _ = cut_version(store, "tickets", RECORDS, lineage=lineage)
    monkeypatch.setattr(cli, "_resolve", lambda _cfg, _ref: (manifest, store))
    result = CliRunner().invoke(cli.datasets_app, ["show", "tickets", "--record", "t001", "--json"])
    assert result.exit_code == 0, result.output
    assert [e["record_id"] for e in json.loads(result.stdout)["lineage"]] == ["r1"]
    table = CliRunner().invoke(cli.datasets_app, ["show", "tickets", "--record", "t002"])
    assert "t002" in table.stdout
    assert "r2" in table.stdout
    assert "r1 " not in table.stdout


def test_the_report_lists_filtered_records_with_their_rule(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import uuid

    from services.ingestion.cli import print_report
    from shared.events import IngestCompleted
    from shared.events.ingest import FilteredRecord

    report = IngestCompleted(
        dataset="tickets",
        request_id=uuid.uuid4(),
        read=150,
        filtered={"too_short": 120},
        filtered_records=[
            FilteredRecord(source="a.jsonl", line=i, rule="too_short") for i in range(1, 101)
        ],
    )
    print_report(report)
    printed = capsys.readouterr().out
    assert "120 record(s) dropped by quality filters" in printed
    assert "a.jsonl:7: too_short" in printed
    assert "... and 20 more" in printed
