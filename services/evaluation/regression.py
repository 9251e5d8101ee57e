"""Candidate against champion on the same examples: exact McNemar and a paired bootstrap."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PairedResult:
    metric: str
    candidate: float
    champion: float
    delta: float
    p_value: float
    test: str
    worse: bool  # significantly worse at alpha

    def as_dict(self) -> dict[str, object]:
        return self.__dict__.copy()


def mcnemar(
    candidate_correct: Sequence[bool] | np.ndarray,
    champion_correct: Sequence[bool] | np.ndarray,
    alpha: float = 0.05,
) -> PairedResult:
    """Exact McNemar test: a two-sided binomial test on the discordant pairs (scipy)."""
    from scipy.stats import binomtest

    cand = np.asarray(candidate_correct, dtype=bool)
    champ = np.asarray(champion_correct, dtype=bool)
    only_candidate = int(np.sum(cand & ~champ))
    only_champion = int(np.sum(~cand & champ))
    discordant = only_candidate + only_champion
    p = 1.0 if discordant == 0 else float(binomtest(only_candidate, discordant, 0.5).pvalue)
    delta = float(cand.mean() - champ.mean()) if cand.size else 0.0
    return PairedResult(
        "accuracy",
        float(cand.mean()) if cand.size else 0.0,
        float(champ.mean()) if champ.size else 0.0,
        delta,
        p,
        f"mcnemar-exact (b={only_candidate}, c={only_champion})",
        worse=delta < 0 and p < alpha,
    )


def paired_bootstrap(
    metric: str,
    candidate: Sequence[float],
    champion: Sequence[float],
    *,
    alpha: float = 0.05,
    samples: int = 1000,
    seed: int = 0,
) -> PairedResult:
    """One-sided paired bootstrap: how often resampled candidate - champion is >= 0."""
    cand = np.asarray(candidate, dtype=float)
    champ = np.asarray(champion, dtype=float)
    diffs = cand - champ
    delta = float(diffs.mean()) if diffs.size else 0.0
    if diffs.size == 0:
        p = 1.0
    else:
        rng = np.random.default_rng(seed)
        idx = rng.integers(0, diffs.size, size=(samples, diffs.size))
        means = diffs[idx].mean(axis=1)
        p = float(np.mean(means >= 0))  # p-value of "candidate is worse"
    return PairedResult(
        metric,
        float(cand.mean()) if cand.size else 0.0,
        float(champ.mean()) if champ.size else 0.0,
        delta,
        p,
        "paired-bootstrap",
        worse=delta < 0 and p < alpha,
    )
