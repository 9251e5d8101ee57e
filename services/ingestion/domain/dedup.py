"""Exact and near-duplicate detection: keyed fingerprints, MinHash signatures, LSH bands.

MinHash is computed for many documents at once with numpy: words hash once (crc32), a
k-word shingle hash is a polynomial of its word hashes, and the permutations
``(a*h + b) mod (2^61 - 1)`` run as one matrix per batch, reduced per document.
"""

from __future__ import annotations

import hashlib
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

_WORD = re.compile(r"\w+")
_MAX32 = np.uint64((1 << 32) - 1)
_POLY = np.uint64(1_000_003)
_BLOCK_SHINGLES = 2048


class DedupConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    exact: bool = Field(True, description="Drop exact duplicates (normalized text).")
    near: bool = Field(True, description="Drop near duplicates (MinHash + LSH).")
    threshold: float = Field(0.6, gt=0, le=1, description="Jaccard similarity of near dups.")
    num_perm: int = Field(128, ge=16, le=1024, description="MinHash permutations.")
    shingle_size: int = Field(3, ge=1, le=20, description="Words per shingle.")
    seed: int = Field(1, description="Seed of the permutations.")
    bands: int | None = Field(
        None,
        ge=1,
        le=1024,
        description="LSH bands (rows = num_perm // bands); default: the bands that minimize "
        "0.1 x false positives + 0.9 x false negatives at the threshold (candidates are "
        "verified, so a false candidate costs one comparison, a missed one a duplicate).",
    )


def words_of(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def shingles(text: str, size: int) -> list[str]:
    """The k-word shingles of a text (the reference representation, as strings)."""
    words = words_of(text)
    if len(words) <= size:
        return [" ".join(words)]
    return [" ".join(words[i : i + size]) for i in range(len(words) - size + 1)]


class _WordHashes(dict[str, int]):
    """crc32 of words, memoized: a corpus repeats its vocabulary, so most lookups hit
    (one C-level dict lookup instead of an encode and a crc32 per word)."""

    MAX_WORDS = 500_000  # ~50 MB at most; words past it are hashed, not kept

    def __missing__(self, word: str) -> int:
        value = zlib.crc32(word.encode())
        if len(self) < self.MAX_WORDS:
            self[word] = value
        return value


_WORD_HASHES = _WordHashes()


def shingle_hashes(text: str, size: int, words: list[str] | None = None) -> np.ndarray:
    """32-bit hashes of the k-word shingles (same shingles as ``shingles``); ``words``:
    the text's ``words_of`` when the caller has them already."""
    if words is None:
        words = words_of(text)
    hashes = np.fromiter(map(_WORD_HASHES.__getitem__, words), dtype=np.uint64, count=len(words))
    if len(hashes) <= size:
        size = max(len(hashes), 1)
        if not len(hashes):
            return np.zeros(1, dtype=np.uint64)
    count = len(hashes) - size + 1
    combined = np.zeros(count, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(size):
            combined = combined * _POLY + hashes[j : j + count]
    return (combined >> np.uint64(32)) ^ (combined & _MAX32)


@lru_cache(maxsize=8)
def permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Affine permutations h -> a*h + b mod 2^32 (odd a), drawn as datasketch 2's
    default "affine32" scheme draws them for MinHash(num_perm, seed)."""
    gen = np.random.RandomState(seed)
    a = gen.randint(0, 1 << 31, num_perm, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
    b = gen.randint(0, 1 << 32, num_perm, dtype=np.uint32)
    return a, b


def fmix32(hv: np.ndarray) -> np.ndarray:
    """MurmurHash3's finalizer: spreads weak hashes before the affine permutations."""
    hv = hv ^ (hv >> np.uint32(16))
    hv = hv * np.uint32(0x85EBCA6B)
    hv = hv ^ (hv >> np.uint32(13))
    hv = hv * np.uint32(0xC2B2AE35)
    return hv ^ (hv >> np.uint32(16))


def signatures(
    texts: Sequence[str], config: DedupConfig, words: Sequence[list[str] | None] | None = None
) -> np.ndarray:
    """MinHash signatures, one row of ``num_perm`` uint32 per text (``words``: each text's
    ``words_of``, or None where the caller has not got them)."""
    out = np.empty((len(texts), config.num_perm), dtype=np.uint32)
    if not texts:
        return out
    a, b = permutations(config.num_perm, config.seed)
    words = words if words is not None else [None] * len(texts)
    parts = [shingle_hashes(t, config.shingle_size, w) for t, w in zip(texts, words, strict=True)]
    block: list[np.ndarray] = []
    first = 0
    size = 0
    with np.errstate(over="ignore"):
        # blocks of ~2k shingles (x 128 permutations, uint32: 1 MB) stay in the L2 cache
        for index, part in enumerate(parts):
            block.append(part)
            size += len(part)
            if size >= _BLOCK_SHINGLES or index == len(parts) - 1:
                hv = fmix32(np.concatenate(block).astype(np.uint32))
                phv = np.multiply(hv[:, None], a[None, :])
                np.add(phv, b[None, :], out=phv)
                offsets = np.cumsum([0] + [len(p) for p in block[:-1]])
                out[first : index + 1] = np.minimum.reduceat(phv, offsets, axis=0)
                block, first, size = [], index + 1, 0
    return out


FALSE_POSITIVE_WEIGHT = 0.1


def lsh_params(
    threshold: float, num_perm: int, fp_weight: float = FALSE_POSITIVE_WEIGHT
) -> tuple[int, int]:
    """(bands, rows) minimizing the weighted false positive + false negative areas.

    datasketch weighs both 0.5; candidates here are verified by estimated Jaccard, so a
    false positive only costs a comparison: recall weighs 0.9 (measured in docs/ingestion.md).
    """
    grid = np.linspace(0.0, 1.0, 401)
    best, best_error = (1, num_perm), float("inf")
    for bands in range(1, num_perm + 1):
        for rows in range(1, num_perm // bands + 1):
            p = 1 - (1 - grid**rows) ** bands
            below, above = grid <= threshold, grid >= threshold
            error = float(
                fp_weight * np.trapezoid(p[below], grid[below])
                + (1 - fp_weight) * np.trapezoid(1 - p[above], grid[above])
            )
            if error < best_error:
                best, best_error = (bands, rows), error
    return best


def fingerprint(text: str, key: bytes) -> str:
    """Keyed hash of the normalized text: equal texts collide, guesses cannot be checked."""
    normalized = " ".join(text.casefold().split())
    return hashlib.blake2b(normalized.encode(), key=key[:64], digest_size=16).hexdigest()


@dataclass
class NearDuplicate:
    kept: str
    similarity: float


@dataclass
class LSHIndex:
    """In-memory LSH over signatures; the service persists signatures and reloads them."""

    config: DedupConfig
    bands: int = 0
    rows: int = 0
    tables: list[dict[bytes, list[str]]] = field(default_factory=list)
    signatures: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.config.bands is not None:
            self.bands = min(self.config.bands, self.config.num_perm)
            self.rows = self.config.num_perm // self.bands
        else:
            self.bands, self.rows = _cached_params(self.config.threshold, self.config.num_perm)
        self.tables = [{} for _ in range(self.bands)]

    def _keys(self, signature: np.ndarray) -> list[bytes]:
        """Each band's key: its rows' bytes (slices of one ``tobytes``, not one per band)."""
        raw = signature.tobytes()
        width = self.rows * signature.itemsize
        return [raw[start : start + width] for start in range(0, self.bands * width, width)]

    def query(self, signature: np.ndarray) -> NearDuplicate | None:
        """The most similar indexed record at or above the threshold, if any."""
        seen: set[str] = set()
        best: NearDuplicate | None = None
        size = len(signature)
        for table, key in zip(self.tables, self._keys(signature), strict=True):
            for rid in table.get(key, ()):
                if rid in seen:
                    continue
                seen.add(rid)
                similarity = np.count_nonzero(self.signatures[rid] == signature) / size
                if similarity >= self.config.threshold and (
                    best is None or similarity > best.similarity
                ):
                    best = NearDuplicate(rid, similarity)
        return best

    def insert(self, record_id: str, signature: np.ndarray) -> None:
        self.signatures[record_id] = signature
        for table, key in zip(self.tables, self._keys(signature), strict=True):
            table.setdefault(key, []).append(record_id)

    def remove(self, record_id: str) -> bool:
        signature = self.signatures.pop(record_id, None)
        if signature is None:
            return False
        for table, key in zip(self.tables, self._keys(signature), strict=True):
            bucket = table.get(key, [])
            if record_id in bucket:
                bucket.remove(record_id)
        return True

    def __len__(self) -> int:
        return len(self.signatures)


@lru_cache(maxsize=32)
def _cached_params(threshold: float, num_perm: int) -> tuple[int, int]:
    return lsh_params(threshold, num_perm)
