"""Consistent detection across the corpus: a value once detected with confidence is
anonymized wherever it appears verbatim later, even where the detector misses it
("hey its grace whitaker lol").

The index holds keyed hashes of normalized values (never the values); a text's candidate
spans (runs of up to ``max_words`` words) are hashed the same way and looked up.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

WORD = re.compile(r"[^\W_][\w'.@+-]*[^\W_]|[^\W_]", re.UNICODE)
TOKEN = re.compile(r"<[A-Z_]+[_#!][^<>\s]*>|<[A-Z_]+>")


@dataclass(frozen=True)
class KnownPolicy:
    """Which detections teach the index, and how long a looked-up run may be."""

    enabled: bool = True
    min_score: float = 0.8
    min_chars: int = 4
    max_words: int = 4


@dataclass(frozen=True)
class Candidate:
    start: int
    end: int
    text: str


def candidates(text: str, max_words: int) -> Iterator[Candidate]:
    """Every run of 1..max_words consecutive words outside replacement tokens."""
    blocked = [m.span() for m in TOKEN.finditer(text)]
    words = [
        m.span() for m in WORD.finditer(text) if not any(s <= m.start() < e for s, e in blocked)
    ]
    for i in range(len(words)):
        for j in range(i, min(i + max_words, len(words))):
            start, end = words[i][0], words[j][1]
            if any(start < e and s < end for s, e in blocked):
                break
            yield Candidate(start, end, text[start:end])


def choose(found: list[tuple[Candidate, str]]) -> list[tuple[Candidate, str]]:
    """Longest matches first, without overlaps; returned right to left (safe to splice)."""
    chosen: list[tuple[Candidate, str]] = []
    for cand, etype in sorted(
        found, key=lambda item: (-(item[0].end - item[0].start), item[0].start)
    ):
        if all(cand.end <= c.start or c.end <= cand.start for c, _ in chosen):
            chosen.append((cand, etype))
    return sorted(chosen, key=lambda item: -item[0].start)
