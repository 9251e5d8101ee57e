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


@pytest.mark.parametrize("digest", ["../../etc/passwd", "/dev/zero", "AB" * 32, "0" * 63 + "g"])
def test_a_claim_cannot_name_a_file_outside_the_store(tmp_path: Path, digest: str) -> None:
    """Security finding 4: the digest was joined into a path; now it must be 64 hex digits,
    both when an event is decoded and inside the store (defence in depth)."""
    from pydantic import ValidationError

    from shared.events import ClaimCheck

    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    with pytest.raises(ValidationError):
        ClaimCheck(uri="x", sha256=digest, size=1)
    store = ArtifactStore(str(tmp_path / "store"))
    forged = ClaimCheck.model_construct(uri="x", sha256=digest, size=1, media_type="x")
    for operation in (store.get_bytes, store.delete, store.exists):
        with pytest.raises(ValueError, match="not a sha256"):
            operation(forged)
    assert victim.read_text() == "keep me"


def test_size_is_checked_before_reading(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path))
    claim = store.put_bytes(b"x" * 1000)
    lying = claim.model_copy(update={"size": 10})
    chunks = store.iter_chunks(lying)
    with pytest.raises(ArtifactIntegrityError, match="1000 bytes stored"):
        next(chunks)
