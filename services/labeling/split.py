"""The deterministic, stratified train/validation/test split of a labeled version.

Within each stratum (the label for single-label tasks; one stratum otherwise) records are
ordered by a keyed hash of their id and cut by the project's fractions, so the same records
always land in the same split whatever order they arrive in, and every label appears in
every split in proportion (when there are enough of it).
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Sequence

ORDER = ("train", "validation", "test")


def assign(
    items: Sequence[tuple[str, str]], fractions: dict[str, float], seed: str
) -> dict[str, str]:
    """record_id -> split, for (record_id, stratum) pairs."""
    strata: dict[str, list[str]] = defaultdict(list)
    for record_id, stratum in items:
        strata[stratum].append(record_id)
    out: dict[str, str] = {}
    for ids in strata.values():
        ids.sort(key=lambda rid: hashlib.sha256(f"{seed}\0{rid}".encode()).hexdigest())
        n = len(ids)
        counts = {name: int(n * fractions.get(name, 0.0)) for name in ORDER}
        # Largest remainders get the records the floors left over (test, then validation first
        # on ties), so a stratum of 3 with 80/10/10 still gives one to train only.
        leftover = n - sum(counts.values())
        remainders = sorted(
            ORDER, key=lambda s: (-(n * fractions.get(s, 0.0) - counts[s]), ORDER.index(s))
        )
        for name in remainders[:leftover]:
            counts[name] += 1
        start = 0
        for name in ORDER:
            for rid in ids[start : start + counts[name]]:
                out[rid] = name
            start += counts[name]
    return out
