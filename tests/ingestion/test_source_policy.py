"""The ingestion source policy: a request names only what the operator allowed, whoever
published it (issue 13, finding 1): local paths under the allowed roots (links resolved),
never the data dir but its inbox, URLs only of allowed schemes; a refusal fails the job,
is audited, and reads the same whether the denied path exists or not."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from services.ingestion.adapters.readers import read_source
from services.ingestion.config import IngestionSettings
from services.ingestion.jobs import IngestRunner
from services.ingestion.policy import SourceDeniedError, SourcePolicy, redact
from shared.events import AuditRecorded, IngestCompleted, IngestRequested, RecordsIngested
from shared.events.ingest import SourceSpec
from shared.storage import ArtifactStore
from tests.ingestion.fakes import FakeJobStore

pytestmark = pytest.mark.unit
LINE = b'{"text": "the parcel arrived damaged and two days late"}\n'


@pytest.fixture
def tree(tmp_path: Path) -> dict[str, Path]:
    """An allowed root with a good file, a data dir inside it (secrets), a file outside."""
    root, outside, data = tmp_path / "root", tmp_path / "outside", tmp_path / "root" / ".llmops"
    for path in (root / "in", outside, data / "inbox"):
        path.mkdir(parents=True)
    (root / "in" / "good.jsonl").write_bytes(LINE)
    (outside / "secret.jsonl").write_bytes(b'{"text": "outside the roots"}\n')
    (data / "admin.key").write_text("sk-llmops-admin-secret")
    (data / "inbox" / "drop.jsonl").write_bytes(LINE)
    (root / "in" / "link.jsonl").symlink_to(outside / "secret.jsonl")
    (root / "in" / "dangling.jsonl").symlink_to(outside / "nothing-here.jsonl")
    (root / "linked-dir").symlink_to(outside)
    return {"root": root, "outside": outside, "data": data}


def _settings(tree: dict[str, Path], **fields: object) -> IngestionSettings:
    return IngestionSettings(
        data_dir=tree["data"], allowed_roots=[tree["root"]], chunk_rows=4, **fields
    )


def _denial(policy: SourcePolicy, uri: str) -> str:
    with pytest.raises(SourceDeniedError) as denied:
        policy.check(uri)
    return denied.value.rule


def test_local_paths_under_the_roots_and_the_inbox_only(tree: dict[str, Path]) -> None:
    policy = _settings(tree).source_policy()
    root, outside, data = tree["root"], tree["outside"], tree["data"]
    policy.check(str(root / "in" / "good.jsonl"))
    policy.check(f"file://{root}/in/good.jsonl")
    policy.check(str(root / "in" / "*.jsonl"))  # a glob: its fixed part is checked here
    policy.check(str(data / "inbox" / "drop.jsonl"))
    denied = [
        str(outside / "secret.jsonl"),
        f"file://{outside}/secret.jsonl",
        str(root / "in" / ".." / ".." / "outside" / "secret.jsonl"),
        str(root / "in" / "link.jsonl"),  # a symlink is judged by its target
        str(root / "linked-dir" / "secret.jsonl"),
        str(data / "admin.key"),  # the data dir is inside the root, and still refused
        str(data),
        str(data / "*"),
        "/etc/hostname",
        "/etc/*",
    ]
    for uri in denied:
        assert "LLMOPS_INGESTION_ALLOWED_ROOTS" in _denial(policy, uri), uri


def test_a_refusal_does_not_tell_whether_the_path_exists(tree: dict[str, Path]) -> None:
    policy = _settings(tree).source_policy()
    outside = tree["outside"]
    exists = _denial(policy, str(outside / "secret.jsonl"))
    assert _denial(policy, str(outside / "no-such-file.jsonl")) == exists
    assert _denial(policy, str(tree["root"] / "in" / "dangling.jsonl")) == exists
    assert _denial(policy, str(tree["data"] / "no-such.key")) == exists


def test_url_schemes_need_allowing_and_chains_are_refused(tree: dict[str, Path]) -> None:
    strict = _settings(tree).source_policy()
    for uri in ("http://127.0.0.1:9/x", "https://example.com/a.jsonl", "s3://b/k", "memory://x"):
        assert "ALLOWED_SCHEMES" in _denial(strict, uri)
    assert "chained" in _denial(strict, f"zip://a.jsonl::file://{tree['outside']}/x.zip")
    permissive = _settings(tree, allowed_schemes=["s3"]).source_policy()
    permissive.check("s3://bucket/raw/*.jsonl")
    assert "ALLOWED_SCHEMES" in _denial(permissive, "https://example.com/a.jsonl")


def test_reports_and_audit_never_carry_url_credentials() -> None:
    assert redact("https://user:pw@host:8443/p/a.jsonl?X-Amz-Signature=abc") == (
        "https://host:8443/p/a.jsonl"
    )
    assert redact("/srv/data/a.jsonl") == "/srv/data/a.jsonl"


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LLMOPS_INGESTION_ALLOWED_ROOTS", f"{tmp_path}/a{os.pathsep}{tmp_path}/b")
    monkeypatch.setenv("LLMOPS_INGESTION_ALLOWED_SCHEMES", "s3, https")
    settings = IngestionSettings(data_dir=tmp_path / "data")
    assert settings.allowed_roots == [tmp_path / "a", tmp_path / "b"]
    assert settings.allowed_schemes == ["s3", "https"]
    monkeypatch.delenv("LLMOPS_INGESTION_ALLOWED_ROOTS")
    monkeypatch.delenv("LLMOPS_INGESTION_ALLOWED_SCHEMES")
    default = IngestionSettings(data_dir=tmp_path / "data")
    assert default.allowed_roots == [Path.cwd()]  # where the service (`llmops up`) started
    assert default.allowed_schemes == []


def _run(tree: dict[str, Path], *uris: str) -> FakeJobStore:
    settings = _settings(tree)
    jobs = FakeJobStore()
    runner = IngestRunner(
        jobs,
        settings,
        reader=read_source,
        detect_language=None,
        fingerprint_key=b"key",
        transit=ArtifactStore(str(tree["data"] / "transit")),
    )
    request = IngestRequested(dataset="d", sources=[SourceSpec(uri=u) for u in uris])
    jobs.add(None, request)  # type: ignore[arg-type]
    runner.run_job(str(request.event_id))
    return jobs


def test_a_denied_source_fails_the_job_before_anything_is_read_and_is_audited(
    tree: dict[str, Path],
) -> None:
    good, key = str(tree["root"] / "in" / "good.jsonl"), str(tree["data"] / "admin.key")
    jobs = _run(tree, good, key)
    (report,) = jobs.of(IngestCompleted)
    assert report.failed is not None
    assert key in report.failed
    assert "not allowed" in report.failed
    assert "sk-llmops" not in report.model_dump_json()
    assert jobs.of(RecordsIngested) == []  # not even the allowed file before it
    (audit,) = jobs.of(AuditRecorded)
    assert (audit.action, audit.allowed) == ("ingest.source_denied", False)
    assert audit.details["source"] == key
    assert audit.causation_id == report.causation_id


def test_a_directory_whose_link_leads_out_fails_the_job(tree: dict[str, Path]) -> None:
    jobs = _run(tree, str(tree["root"] / "in"))  # good.jsonl, then link.jsonl -> outside
    (report,) = jobs.of(IngestCompleted)
    assert report.failed is not None
    assert "not allowed" in report.failed
    texts = [r.text for b in jobs.of(RecordsIngested) for r in b.records]
    assert "outside the roots" not in texts
    assert jobs.of(AuditRecorded)


def test_allowed_sources_and_the_inbox_still_flow(tree: dict[str, Path]) -> None:
    jobs = _run(tree, str(tree["root"] / "in" / "good.jsonl"), str(tree["data"] / "inbox"))
    (report,) = jobs.of(IngestCompleted)
    assert report.failed is None
    assert report.read == 2
    assert jobs.of(AuditRecorded) == []


def test_a_hard_link_under_a_root_to_a_file_outside_is_refused(tree: dict[str, Path]) -> None:
    """A hard link resolves to itself: the path rules pass it, its link count does not."""
    root, data = tree["root"], tree["data"]
    os.link(data / "admin.key", root / "in" / "key.jsonl")  # the admin key, under a root
    os.link(tree["outside"] / "secret.jsonl", root / "in" / "secret.jsonl")
    policy = _settings(tree).source_policy()
    rules = {_denial(policy, str(root / "in" / "key.jsonl"))}
    rules.add(_denial(policy, f"file://{root}/in/secret.jsonl"))
    (rule,) = rules  # one text, whatever the link leads to: it names nothing outside
    assert "hard links" in rule
    assert "LLMOPS_INGESTION_ALLOW_HARD_LINKS" in rule
    assert str(data) not in rule
    policy.check(str(root / "in" / "good.jsonl"))  # one link: still fine
    # a missing file under a root is not refused by the link rule (it fails when read)
    policy.check(str(root / "in" / "no-such-file.jsonl"))
    allowing = _settings(tree, allow_hard_links=True).source_policy()
    allowing.check(str(root / "in" / "secret.jsonl"))
    assert allowing.describe()["hard_links_allowed"] is True


def test_a_directory_holding_a_hard_link_fails_the_job_before_reading_it(
    tree: dict[str, Path],
) -> None:
    os.link(tree["data"] / "admin.key", tree["root"] / "in" / "zz-key.jsonl")
    (tree["root"] / "in" / "link.jsonl").unlink()  # only the hard link leads out
    (tree["root"] / "in" / "dangling.jsonl").unlink()
    jobs = _run(tree, str(tree["root"] / "in"))
    (report,) = jobs.of(IngestCompleted)
    assert report.failed is not None
    assert "hard links" in report.failed
    assert "sk-llmops" not in report.model_dump_json()
    texts = [r.text for b in jobs.of(RecordsIngested) for r in b.records]
    assert not any("sk-llmops" in t for t in texts)
    (audit,) = jobs.of(AuditRecorded)
    assert (audit.action, audit.allowed) == ("ingest.source_denied", False)


def test_hard_links_allowed_by_setting(
    monkeypatch: pytest.MonkeyPatch, tree: dict[str, Path]
) -> None:
    os.link(tree["outside"] / "secret.jsonl", tree["root"] / "in" / "shared.jsonl")
    monkeypatch.setenv("LLMOPS_INGESTION_ALLOW_HARD_LINKS", "true")
    settings = IngestionSettings(data_dir=tree["data"], allowed_roots=[tree["root"]])
    assert settings.allow_hard_links is True
    settings.source_policy().check(str(tree["root"] / "in" / "shared.jsonl"))
