"""Drift statistics between a reference window and a current window.

PSI (population stability index) on binned lengths, the two-sample Kolmogorov-Smirnov test
(scipy), the Jensen-Shannon distance (scipy) on token and label distributions, and the maximum
mean discrepancy (MMD, RBF kernel) of sentence embeddings with a permutation test
(``scipy.stats.permutation_test``). Pure functions over numbers: no broker, no model.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.spatial.distance import jensenshannon
from scipy.stats import ks_2samp, permutation_test

EPS = 1e-4


@dataclass(frozen=True)
class DriftResult:
    """One feature's comparison: the score, its threshold and whether it crossed it."""

    feature: str
    method: str
    score: float
    threshold: float
    drifted: bool
    p_value: float | None = None
    evidence: dict[str, Any] = field(default_factory=dict)


def psi(reference: Sequence[float], current: Sequence[float], bins: int | None = None) -> float:
    """Population stability index over the reference's quantile bins.

    The bin count follows the sample size (about 40 records a bin, 3 to 10 bins): with few
    records per bin PSI's sampling noise alone crosses the usual 0.2-0.25 thresholds.
    """
    bins = bins or max(3, min(10, min(len(reference), len(current)) // 40))
    ref = np.asarray(reference, dtype=float)
    cur = np.asarray(current, dtype=float)
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1)))
    if len(edges) < 2:  # a constant reference: two bins, at and beyond it
        edges = np.array([ref[0] - 0.5, ref[0] + 0.5])
    edges[0], edges[-1] = -np.inf, np.inf
    expected = np.histogram(ref, edges)[0] / len(ref)
    actual = np.histogram(cur, edges)[0] / len(cur)
    expected = np.clip(expected, EPS, None)
    actual = np.clip(actual, EPS, None)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def length_drift(
    feature: str,
    reference: Sequence[float],
    current: Sequence[float],
    psi_threshold: float,
    ks_alpha: float,
) -> list[DriftResult]:
    """PSI and KS on one numeric feature (e.g. prompt length in tokens)."""
    score = psi(reference, current)
    ks = ks_2samp(reference, current)
    evidence = {
        "reference_mean": float(np.mean(reference)),
        "current_mean": float(np.mean(current)),
        "reference_n": len(reference),
        "current_n": len(current),
    }
    return [
        DriftResult(feature, "psi", score, psi_threshold, score > psi_threshold, None, evidence),
        DriftResult(
            feature,
            "ks",
            float(ks.statistic),
            ks_alpha,
            float(ks.pvalue) < ks_alpha,
            float(ks.pvalue),
            evidence,
        ),
    ]


def distribution_drift(
    feature: str, reference: Sequence[str], current: Sequence[str], threshold: float, top: int = 5
) -> DriftResult:
    """Jensen-Shannon distance (base 2, 0..1) between two categorical samples."""
    ref, cur = Counter(reference), Counter(current)
    vocab = sorted(set(ref) | set(cur))
    p = np.array([ref[v] for v in vocab], dtype=float) + EPS
    q = np.array([cur[v] for v in vocab], dtype=float) + EPS
    score = float(jensenshannon(p / p.sum(), q / q.sum(), base=2)) if vocab else 0.0
    evidence = {
        "reference_top": [k for k, _ in ref.most_common(top)],
        "current_top": [k for k, _ in cur.most_common(top)],
        "vocabulary": len(vocab),
    }
    return DriftResult(
        feature, "jensen_shannon", score, threshold, score > threshold, None, evidence
    )


def _mmd(kernel: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
    return float(
        kernel[np.ix_(x, x)].mean() + kernel[np.ix_(y, y)].mean() - 2 * kernel[np.ix_(x, y)].mean()
    )


def embedding_drift(
    reference: np.ndarray, current: np.ndarray, alpha: float, permutations: int, seed: int = 0
) -> DriftResult:
    """MMD^2 (RBF kernel, median-heuristic bandwidth) with a one-sided permutation test."""
    z = np.vstack([reference, current])
    norms = np.sum(z**2, axis=1)
    sq = np.clip(norms[:, None] + norms[None, :] - 2 * z @ z.T, 0, None)
    median = float(np.median(sq[sq > 0])) if np.any(sq > 0) else 1.0
    gamma = 1.0 / median
    kernel = np.exp(-gamma * sq)  # computed once; each permutation only re-indexes it

    # scipy permutes 1-D samples: permute row indices into the kernel matrix
    def statistic(x: np.ndarray, y: np.ndarray) -> float:
        return _mmd(kernel, x.astype(int), y.astype(int))

    n = len(reference)
    test = permutation_test(
        (np.arange(n), np.arange(n, len(z))),
        statistic,
        vectorized=False,
        n_resamples=permutations,
        alternative="greater",
        random_state=np.random.default_rng(seed),
    )
    p_value = float(test.pvalue)
    return DriftResult(
        "embeddings",
        "mmd",
        float(test.statistic),
        alpha,
        p_value < alpha,
        p_value,
        {"permutations": permutations, "gamma": gamma, "dimensions": int(reference.shape[1])},
    )
