"""The audit trail as a hash chain: each entry commits to the one before it.

Pure Python: the chain rules, nothing about storage. An entry's hash is
``sha256(previous hash || canonical JSON of the entry)``; changing, removing or reordering any
entry breaks every hash after it, which ``verify`` reports with the first bad position.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from shared.events import AuditRecorded

GENESIS = "0" * 64


@dataclass(frozen=True)
class Entry:
    """One audited action, as kept (no personal data: the event carries none)."""

    seq: int
    event_id: str
    occurred_at: str
    producer: str
    action: str
    actor: str
    allowed: bool
    target: str
    details: dict[str, Any]
    prev_hash: str
    hash: str

    def body(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "event_id": self.event_id,
            "occurred_at": self.occurred_at,
            "producer": self.producer,
            "action": self.action,
            "actor": self.actor,
            "allowed": self.allowed,
            "target": self.target,
            "details": self.details,
        }


def entry_hash(prev_hash: str, body: dict[str, Any]) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(prev_hash.encode() + canonical.encode()).hexdigest()


def next_entry(event: AuditRecorded, last: Entry | None) -> Entry:
    """The entry that appends ``event`` after ``last`` (None: the first entry)."""
    seq = last.seq + 1 if last else 1
    prev = last.hash if last else GENESIS
    fields = {
        "seq": seq,
        "event_id": str(event.event_id),
        "occurred_at": event.occurred_at.isoformat(),
        "producer": event.producer,
        "action": event.action,
        "actor": event.actor,
        "allowed": event.allowed,
        "target": event.target,
        "details": json.loads(json.dumps(event.details, default=str)),
    }
    return Entry(**fields, prev_hash=prev, hash=entry_hash(prev, fields))


@dataclass(frozen=True)
class Verification:
    ok: bool
    entries: int
    first_bad: int | None = None
    reason: str = ""
    head: str = GENESIS

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "entries": self.entries,
            "first_bad": self.first_bad,
            "reason": self.reason,
            "head": self.head,
        }


def verify(entries: Iterable[Entry]) -> Verification:
    """Walk the chain in order; the first entry whose links or hash do not hold is named."""
    prev, count = GENESIS, 0
    for count, entry in enumerate(entries, 1):
        if entry.seq != count:
            return Verification(False, count, entry.seq, f"expected seq {count}, found {entry.seq}")
        if entry.prev_hash != prev:
            return Verification(False, count, entry.seq, "previous-hash link broken")
        if entry_hash(prev, entry.body()) != entry.hash:
            return Verification(False, count, entry.seq, "entry content changed")
        prev = entry.hash
    return Verification(True, count, head=prev)
