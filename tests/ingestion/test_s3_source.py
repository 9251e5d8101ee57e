"""Ingestion reads s3:// sources line by line (moto's S3 server through s3fs): remote files
have a readline() without a size, which broke every line-mode format on S3."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator

import boto3
import fsspec
import pytest

from services.ingestion.adapters.readers import read_source
from shared.events.ingest import SourceSpec
from tests.support.s3 import moto_s3

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def bucket() -> Iterator[str]:
    with moto_s3() as endpoint:
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="inbox")
        fsspec.filesystem("s3").invalidate_cache()
        yield "inbox"


def _put(bucket: str, key: str, body: bytes) -> str:
    boto3.client("s3").put_object(Bucket=bucket, Key=key, Body=body)
    return f"s3://{bucket}/{key}"


def test_jsonl_text_and_csv_stream_from_s3_with_bad_lines_reported(bucket: str) -> None:
    rows = [json.dumps({"text": f"ticket {i} about a parcel"}) for i in range(3)]
    jsonl = _put(bucket, "t/tickets.jsonl", ("\n".join(rows) + "\n{broken\n").encode())
    text = _put(bucket, "t/notes.txt", b"first note\n" + b"x" * 5000 + b"\nlast note\n")
    table = _put(bucket, "t/rows.csv", b"id,text\n1,hello there\n2,general kenobi\n")
    packed = _put(bucket, "t/more.jsonl.gz", gzip.compress(rows[0].encode() + b"\n"))

    got = list(read_source(SourceSpec(uri=jsonl), max_line_bytes=1024))
    texts = [r.fields["text"] for r in got if r.fields]
    assert texts == [f"ticket {i} about a parcel" for i in range(3)]
    assert [r.line for r in got if r.error] == [4]
    assert got[0].source == jsonl

    lines = list(read_source(SourceSpec(uri=text), max_line_bytes=1024))
    assert [r.text for r in lines if r.text] == ["first note", "last note"]
    assert "over the 1,024-byte limit" in next(r.error for r in lines if r.error)

    csv_rows = list(read_source(SourceSpec(uri=table), max_line_bytes=1024))
    assert [r.fields for r in csv_rows] == [
        {"id": "1", "text": "hello there"},
        {"id": "2", "text": "general kenobi"},
    ]
    assert [r.fields for r in read_source(SourceSpec(uri=packed), max_line_bytes=1024)] == [
        {"text": "ticket 0 about a parcel"}
    ]
    whole = list(read_source(SourceSpec(uri=f"s3://{bucket}/t/"), max_line_bytes=1024))
    assert len([r for r in whole if r.fields or r.text]) == 3 + 2 + 2 + 1  # the prefix: all 4
