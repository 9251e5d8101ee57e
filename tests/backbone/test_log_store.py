"""The durable log's object store (tools/s3rver/server.js) over plain HTTP: what tansu relies on."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from shared.stack.broker import stop_process
from shared.stack.log import BUCKET, EmbeddedLog
from tests.support.stack import require_s3rver

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
        listed: list[str] = []
        params = {"list-type": "2", "prefix": prefix}
        while True:
            answer = http.get(store, params=params)
            assert answer.status_code == 200, answer.text
            listed += re.findall(r"<Key>([^<]+)</Key>", answer.text)
            token = re.search(r"<NextContinuationToken>([^<]+)<", answer.text)
            if not token:
                break
            params = {**params, "continuation-token": token.group(1)}
    assert listed == keys  # in order, once each, nothing outside the prefix


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
