"""A generated corpus with known exact and near-duplicate clusters (tests, demo, bench).

Each document belongs to a cluster. The first member is the original; exact copies differ
only in case and spacing; near copies change about 2% of the words (substitute, delete or
insert); hard negatives share a large part of an original but are new documents:
half of it, or (``siblings``) all but ``sibling_rate`` of its words, like two tickets
filled into one template.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

SYLLABLES = ("ka", "lo", "mi", "ren", "tu", "sa", "vor", "el", "quin", "da", "po", "shi", "an")


@dataclass(frozen=True)
class Doc:
    text: str
    cluster: int
    kind: str  # original | exact | near | negative


def _vocabulary(rng: random.Random, size: int) -> list[str]:
    words: set[str] = set()
    while len(words) < size:
        words.add("".join(rng.choice(SYLLABLES) for _ in range(rng.randint(1, 4))))
    return sorted(words)


def _near_copy(rng: random.Random, words: list[str], vocab: list[str], rate: float) -> list[str]:
    copy = list(words)
    for _ in range(max(1, round(len(words) * rate))):
        position = rng.randrange(len(copy))
        action = rng.random()
        if action < 0.5:
            copy[position] = rng.choice(vocab)
        elif action < 0.75 and len(copy) > 10:
            del copy[position]
        else:
            copy.insert(position, rng.choice(vocab))
    return copy


def generate(
    originals: int = 400,
    *,
    seed: int = 7,
    near_per_cluster: tuple[int, int] = (0, 3),
    exact_per_cluster: tuple[int, int] = (0, 2),
    negatives: float = 0.1,
    words: tuple[int, int] = (60, 160),
    edit_rate: float = 0.02,
    siblings: float = 0.0,
    sibling_rate: float = 0.2,
) -> list[Doc]:
    """Documents in a shuffled order; ``cluster`` ids are the ground truth."""
    rng = random.Random(seed)
    vocab = _vocabulary(rng, 6000)
    docs: list[Doc] = []
    for cluster in range(originals):
        base = [rng.choice(vocab) for _ in range(rng.randint(*words))]
        docs.append(Doc(" ".join(base), cluster, "original"))
        for _ in range(rng.randint(*near_per_cluster)):
            docs.append(Doc(" ".join(_near_copy(rng, base, vocab, edit_rate)), cluster, "near"))
        for _ in range(rng.randint(*exact_per_cluster)):
            spaced = "  ".join(base).upper() if rng.random() < 0.5 else " ".join(base) + "  "
            docs.append(Doc(spaced, cluster, "exact"))
        if rng.random() < negatives:  # shares ~half of the original: a different document
            half = base[: len(base) // 2] + [rng.choice(vocab) for _ in range(len(base) // 2)]
            docs.append(Doc(" ".join(half), originals + cluster, "negative"))
        if siblings and rng.random() < siblings:  # the same template, other slot values
            sibling = list(base)
            for position in rng.sample(range(len(base)), round(len(base) * sibling_rate)):
                sibling[position] = rng.choice(vocab)
            docs.append(Doc(" ".join(sibling), 2 * originals + cluster, "negative"))
    rng.shuffle(docs)
    return docs


def score(docs: list[Doc], kept_of: dict[int, int | None]) -> dict[str, float]:
    """Precision/recall of near-dup decisions; ``kept_of[i]`` = index i was a dup of.

    A decision "i duplicates j" is right when i and j are in the same cluster. Every
    document beyond the first of its cluster should be dropped (exact or near).
    """
    true_positive = sum(
        1 for i, j in kept_of.items() if j is not None and docs[i].cluster == docs[j].cluster
    )
    predicted = sum(1 for j in kept_of.values() if j is not None)
    clusters: dict[int, int] = {}
    for doc in docs:
        clusters[doc.cluster] = clusters.get(doc.cluster, 0) + 1
    expected = sum(count - 1 for count in clusters.values())
    precision = true_positive / predicted if predicted else 1.0
    recall = true_positive / expected if expected else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "expected": expected,
        "predicted": predicted,
    }
