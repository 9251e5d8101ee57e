"""Reading record ids out of a dataset-version manifest, whatever its exact layout (pure)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any


def record_ids_in(manifest: bytes) -> list[str]:
    """Record ids of a manifest: JSON (any nesting) or JSON lines with `record_id` fields.

    Accepts ``{"records": [{"record_id": ...}, ...]}``, ``{"record_ids": [...]}``, a list of
    such objects, or one object per line. Unknown layouts give an empty list, never an error.
    """
    text = manifest.decode("utf-8", "replace").strip()
    if not text:
        return []
    try:
        documents: list[Any] = [json.loads(text)]
    except json.JSONDecodeError:
        documents = []
        for line in text.splitlines():
            try:
                documents.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    found: dict[str, None] = {}
    for document in documents:
        for record_id in _walk(document):
            found[record_id] = None
    return list(found)


def nested_claims(manifest: bytes) -> list[dict[str, Any]]:
    """Claim checks (uri + sha256) a manifest points to, e.g. its shards."""
    try:
        document = json.loads(manifest)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return []
    claims: list[dict[str, Any]] = []

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            if {"uri", "sha256"} <= node.keys():
                claims.append(node)
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(document)
    return claims


def _walk(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if isinstance(node.get("record_id"), str):
            yield node["record_id"]
        ids = node.get("record_ids")
        if isinstance(ids, list):
            yield from (item for item in ids if isinstance(item, str))
        for key, value in node.items():
            if key not in ("record_id", "record_ids"):
                yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)
