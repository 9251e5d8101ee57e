from __future__ import annotations

from pathlib import Path

import pytest

from shared.storage import ArtifactIntegrityError, ArtifactStore

pytestmark = pytest.mark.unit


def test_content_addressed_and_idempotent(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path / "a"))
    first = store.put_bytes(b"hello", "text/plain")
    again = store.put_bytes(b"hello", "text/plain")
    assert first == again
    assert first.sha256 == "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
    assert store.get_bytes(first) == b"hello"
    assert first.size == 5


def test_streaming_put_of_many_chunks(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path))
    claim = store.put_chunks(
        (bytes([i % 256]) * 1000 for i in range(3000)), "application/octet-stream"
    )
    assert claim.size == 3_000_000
    assert sum(len(c) for c in store.iter_chunks(claim)) == 3_000_000


def test_tampered_bytes_are_detected(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path))
    claim = store.put_bytes(b"model weights")
    path = Path(claim.uri)
    path.chmod(0o644)
    path.write_bytes(b"model weightz")
    with pytest.raises(ArtifactIntegrityError):
        store.get_bytes(claim)


def test_any_fsspec_url_works(tmp_path: Path) -> None:
    store = ArtifactStore("memory://llmops-test-artifacts")
    claim = store.put_bytes(b"in memory")
    assert claim.uri.startswith("memory://")
    assert store.get_bytes(claim) == b"in memory"
