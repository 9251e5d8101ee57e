"""A small synthetic labeled version (ticket -> category), for the demo and the tests.

Each ticket holds one keyword of its category among filler words, so a tiny model can
learn it in seconds, and the majority-class baseline stays near 1/3.
"""

from __future__ import annotations

import random
from typing import Any

from shared.datasets import DatasetManifest, cut_version
from shared.events import ClaimCheck
from shared.storage import ArtifactStore

CATEGORIES = {
    "billing": ["invoice", "refund", "charged", "payment", "receipt"],
    "shipping": ["parcel", "delivery", "courier", "tracking", "package"],
    "account": ["password", "login", "username", "profile", "email"],
}
FILLER_TEXT = (
    "please help me today with my issue thanks a lot the app and web site are slow again "
    "hello team I need an answer soon"
)
FILLER = FILLER_TEXT.split(" ")


def example(rng: random.Random, index: int, split: str) -> dict[str, Any]:
    label = rng.choice(sorted(CATEGORIES))
    words = [*rng.sample(FILLER, 5), rng.choice(CATEGORIES[label])]
    rng.shuffle(words)
    prompt = f"Ticket: {' '.join(words)}\nCategory:"
    return {
        "record_id": f"syn-{split}-{index:04d}",
        "split": split,
        "task": "classification",
        "prompt": prompt,
        "completion": f" {label}",
        "label": label,
        "provenance": "rule",
        "meta": {"subjects": [f"subject-{index % 7}"]},
    }


def records(sizes: dict[str, int] | None = None, seed: int = 0) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    sizes = sizes or {"train": 240, "validation": 48, "test": 60}
    return [example(rng, i, split) for split, n in sizes.items() for i in range(n)]


def preference_records(count: int = 64, seed: int = 0) -> list[dict[str, Any]]:
    """Preference pairs: the right category is chosen, a wrong one rejected."""
    rng = random.Random(seed)
    rows = []
    for row in records({"train": count, "validation": count // 4}, seed):
        wrong = rng.choice([c for c in CATEGORIES if c != row["label"]])
        rows.append(
            {**row, "task": "preference", "chosen": row["completion"], "rejected": f" {wrong}"}
        )
    return rows


def cut(
    store: ArtifactStore, dataset: str, rows: list[dict[str, Any]], task: str = "classification"
) -> tuple[DatasetManifest, ClaimCheck]:
    """A labeled version of ``rows`` in ``store`` (as labeling would cut it) and its claim."""
    splits: dict[str, int] = {}
    for row in rows:
        splits[row["split"]] = splits.get(row["split"], 0) + 1
    return cut_version(
        store, dataset, rows, labeled=True, producer="synthetic", task=task, splits=splits
    )
