"""The artifact and transit stores on an S3 URL: moto's S3 server on loopback, through s3fs."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from shared.settings import ServiceSettings
from shared.storage import ArtifactIntegrityError, ArtifactStore
from tests.support.s3 import moto_s3

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """A real S3 HTTP API on 127.0.0.1 (moto), credentials through the standard AWS_* vars."""
    with moto_s3() as endpoint:
        yield endpoint


@pytest.fixture
def bucket(s3_endpoint: str, request: pytest.FixtureRequest) -> str:
    name = "llmops-" + request.node.name.lower().replace("_", "-")[:40]
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=name)
    return name


def _keys(endpoint: str, bucket: str) -> list[str]:
    listing = boto3.client("s3", endpoint_url=endpoint).list_objects_v2(Bucket=bucket)
    return sorted(o["Key"] for o in listing.get("Contents", []))


def test_put_get_dedupe_on_s3(s3_endpoint: str, bucket: str) -> None:
    store = ArtifactStore(f"s3://{bucket}/artifacts")
    claim = store.put_bytes(b"model weights" * 1000, "application/octet-stream")
    assert claim.uri.startswith(f"s3://{bucket}/artifacts/sha256/")
    assert store.get_bytes(claim) == b"model weights" * 1000
    assert store.exists(claim)
    again = store.put_bytes(b"model weights" * 1000)
    assert again.sha256 == claim.sha256
    assert _keys(s3_endpoint, bucket) == [f"artifacts/sha256/{claim.sha256[:2]}/{claim.sha256}"]


def test_large_file_streams_in_chunks_and_verifies(
    s3_endpoint: str, bucket: str, tmp_path: Path
) -> None:
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(3 * (1 << 20) + 123))  # several chunks, multipart upload
    store = ArtifactStore(f"s3://{bucket}")
    claim = store.put_file(source, "application/octet-stream")
    assert claim.size == source.stat().st_size
    local = store.fetch_to(claim, tmp_path / "fetched")
    assert local.read_bytes() == source.read_bytes()
    # bytes changed behind the store's back are caught on read
    key = f"sha256/{claim.sha256[:2]}/{claim.sha256}"
    boto3.client("s3", endpoint_url=s3_endpoint).put_object(Bucket=bucket, Key=key, Body=b"x")
    fresh = ArtifactStore(f"s3://{bucket}")
    fresh.fs.invalidate_cache()
    with pytest.raises(ArtifactIntegrityError):
        fresh.get_bytes(claim)


def test_transit_store_from_settings_deletes_on_s3(
    s3_endpoint: str, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLMOPS_TRANSIT_URL", f"s3://{bucket}/transit")
    monkeypatch.setenv("LLMOPS_ARTIFACT_URL", f"s3://{bucket}/artifacts")
    settings = ServiceSettings()
    transit = ArtifactStore(settings.transit_root)
    claim = transit.put_bytes(b'{"text": "raw batch"}\n', "application/x-ndjson")
    assert transit.delete(claim)
    assert not transit.exists(claim)
    assert not transit.delete(claim)
    assert settings.artifact_root == f"s3://{bucket}/artifacts"
    assert not [k for k in _keys(s3_endpoint, bucket) if k.startswith("transit/sha256")]
