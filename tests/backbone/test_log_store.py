"""The durable log's object store (tools/s3rver/server.js) over plain HTTP: what tansu relies on."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from shared.stack.broker import start_process, stop_process
from shared.stack.log import BUCKET, EmbeddedLog
from tests.support.stack import free_port, require_s3rver

pytestmark = pytest.mark.integration


@pytest.fixture
def store(tmp_path: Path) -> Iterator[str]:
    binary = require_s3rver()
    log = EmbeddedLog("127.0.0.1:1", tmp_path / "log", tmp_path / "logs")
    log._binary = binary
    log._start_store()
    try:
        yield f"http://127.0.0.1:{log.store_port}/{BUCKET}"
    finally:
        stop_process(log.store)


def test_a_listing_of_more_than_a_page_reads_every_key(store: str) -> None:
    """tansu lists a partition's batches on every fetch: past 1,000 keys s3rver's continuation
    token (DES, refused by OpenSSL 3) answered 500 and the partition became unreadable."""
    prefix = "topics/t/partitions/0000000000/records/"
    keys = [f"{prefix}{offset:020}.batch" for offset in range(1005)]
    with httpx.Client(timeout=30) as http:
        for key in keys:
            http.put(f"{store}/{key}", content=b"x").raise_for_status()
        http.put(f"{store}/topics/t/partitions/0000000000/watermark.json", content=b"{}")
        # tansu's listing (no max-keys): every key in one page, from the store's index
        answer = http.get(store, params={"list-type": "2", "prefix": prefix})
        assert re.findall(r"<Key>([^<]+)</Key>", answer.text) == keys
        assert "<IsTruncated>false</IsTruncated>" in answer.text
        listed: list[str] = []
        params = {"list-type": "2", "prefix": prefix, "max-keys": "1000"}
        while True:
            answer = http.get(store, params=params)
            assert answer.status_code == 200, answer.text
            listed += re.findall(r"<Key>([^<]+)</Key>", answer.text)
            token = re.search(r"<NextContinuationToken>([^<]+)<", answer.text)
            if not token:
                break
            params = {**params, "continuation-token": token.group(1)}
    assert listed == keys  # in order, once each, nothing outside the prefix
    with httpx.Client(timeout=30) as http:  # the index follows deletes
        http.delete(f"{store}/{keys[3]}").raise_for_status()
        answer = http.get(store, params={"list-type": "2", "prefix": prefix})
    assert re.findall(r"<Key>([^<]+)</Key>", answer.text) == keys[:3] + keys[4:]


def test_conditional_writes_and_etags_of_the_bytes(store: str) -> None:
    url = f"{store}/clusters/c/topics/t/partitions/0000000000/watermark.json"
    with httpx.Client(timeout=10) as http:
        created = http.put(url, content=b'{"high":1}', headers={"If-None-Match": "*"})
        assert created.status_code == 200
        assert (
            http.put(url, content=b'{"high":9}', headers={"If-None-Match": "*"}).status_code == 412
        )
        got = http.get(url)
        assert got.content == b'{"high":1}'
        assert got.headers["etag"] == f'"{hashlib.md5(got.content).hexdigest()}"'
        assert got.headers["etag"] == created.headers["etag"]
        assert http.get(url, headers={"If-None-Match": got.headers["etag"]}).status_code == 304
        stale = http.put(url, content=b'{"high":2}', headers={"If-Match": '"00"'})
        assert stale.status_code == 412
        updated = http.put(url, content=b'{"high":2}', headers={"If-Match": got.headers["etag"]})
        assert updated.status_code == 200
        assert http.get(url).content == b'{"high":2}'
        missing = http.put(f"{url}.none", content=b"{}", headers={"If-Match": got.headers["etag"]})
        assert missing.status_code == 404


def test_objects_are_sealed_and_listed_with_their_plaintext_size(
    store: str, tmp_path: Path
) -> None:
    key = "clusters/c/topics/t/partitions/0000000000/records/00000000000000000000.batch"
    body = b"Omar Haddad 203.0.113.77 " * 3
    with httpx.Client(timeout=10) as http:
        put = http.put(f"{store}/{key}", content=body)
        assert put.headers["etag"] == f'"{hashlib.md5(body).hexdigest()}"'
        listing = http.get(store, params={"list-type": "2", "prefix": key})
        assert re.findall(r"<Size>(\d+)</Size>", listing.text) == [str(len(body))]
        head = http.head(f"{store}/{key}")
        assert head.headers["content-length"] == str(len(body))
        assert http.get(f"{store}/{key}").content == body
        ranged = http.get(f"{store}/{key}", headers={"Range": "bytes=0-10"})
        assert ranged.content == body[:11]
    stored = (tmp_path / "log" / BUCKET / f"{key}._S3rver_object").read_bytes()
    assert b"Omar Haddad" not in stored
    assert stored.startswith(b"LLMOPSE1")


def test_objects_an_earlier_store_kept_in_clear_are_sealed_at_start(tmp_path: Path) -> None:
    binary = require_s3rver()
    key = "clusters/c/topics/t/partitions/0000000000/records/00000000000000000000.batch"
    body = b"742 Evergreen Terrace"
    port = free_port()
    clear = start_process(
        [*binary, str(tmp_path / "log"), str(port), BUCKET],
        f"127.0.0.1:{port}",
        tmp_path / "clear.log",
        name="log store in clear",
        env={"LLMOPS_LOG_STORE_KEY_FILE": ""},
    )
    try:
        httpx.put(f"http://127.0.0.1:{port}/{BUCKET}/{key}", content=body).raise_for_status()
    finally:
        stop_process(clear)
    file = tmp_path / "log" / BUCKET / f"{key}._S3rver_object"
    assert file.read_bytes() == body
    before = file.stat().st_mtime
    log = EmbeddedLog("127.0.0.1:1", tmp_path / "log", tmp_path / "logs")
    log._binary = binary
    log._start_store()
    try:
        assert body not in file.read_bytes()
        assert abs(file.stat().st_mtime - before) < 0.001  # its age, for retention
        got = httpx.get(f"http://127.0.0.1:{log.store_port}/{BUCKET}/{key}")
        assert got.content == body
        assert got.headers["etag"] == f'"{hashlib.md5(body).hexdigest()}"'
    finally:
        stop_process(log.store)
