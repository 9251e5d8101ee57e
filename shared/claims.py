"""Claim-checked batches: records inline while small, else JSON lines in a store.

Ingestion and anonymization send record batches this way (``records`` + ``claim`` fields
of ``RecordsIngested`` / ``RecordsAnonymized``). ``pack`` decides, ``unpack`` reads
either form back. Parse errors name the problem, never the (possibly raw) text.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Protocol, TypeVar

from pydantic import BaseModel, ValidationError

from shared.events.envelope import ClaimCheck
from shared.events.registry import format_errors

BATCH_MEDIA_TYPE = "application/jsonl"
M = TypeVar("M", bound=BaseModel)


class BlobWriter(Protocol):
    def put_bytes(self, data: bytes, media_type: str = ...) -> ClaimCheck: ...


class BlobReader(Protocol):
    def get_bytes(self, claim: ClaimCheck) -> bytes: ...


def encode_batch(records: Sequence[BaseModel]) -> bytes:
    return "".join(r.model_dump_json() + "\n" for r in records).encode()


def pack(
    records: Sequence[M], store: BlobWriter, max_inline_bytes: int
) -> tuple[list[M], ClaimCheck | None]:
    """(records, None) when they fit ``max_inline_bytes``, else ([], claim of the JSONL)."""
    body = encode_batch(records)
    if len(body) <= max_inline_bytes:
        return list(records), None
    return [], store.put_bytes(body, BATCH_MEDIA_TYPE)


def decode_batch(body: bytes, model: type[M]) -> list[M]:
    """JSON lines (or one JSON array) of ``model``; ValueError names what is wrong."""
    raw = body.decode("utf-8")
    try:
        if raw.lstrip().startswith("["):
            return [model.model_validate(item) for item in json.loads(raw)]
        return [model.model_validate_json(line) for line in raw.splitlines() if line.strip()]
    except ValidationError as exc:  # its message would quote the text into logs and DLQs
        detail = format_errors(exc)
        raise ValueError(f"claim-checked batch is not a list of records: {detail}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"claim-checked batch is not JSON: {exc.msg} at {exc.pos}") from None


def unpack(
    records: Sequence[M], claim: ClaimCheck | None, store: BlobReader, model: type[M]
) -> list[M]:
    """The batch's records: inline ones, or those behind its claim check."""
    if claim is None:
        return list(records)
    return decode_batch(store.get_bytes(claim), model)
