"""Inter-annotator agreement with the field's libraries, and consensus by majority.

Cohen's kappa per annotator pair comes from scikit-learn, Krippendorff's alpha (nominal, or
interval for ratings) from ``krippendorff``. Fleiss' kappa is computed here (statsmodels is
not a dependency); ``tests/labeling/test_agreement.py`` checks it against the worked
example of Fleiss (1971) as reproduced on Wikipedia (kappa = 0.210).
"""

from __future__ import annotations

import math
import warnings
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

import krippendorff
import numpy as np
from sklearn.metrics import cohen_kappa_score


def fleiss_kappa(counts: Sequence[Sequence[int]]) -> float | None:
    """Fleiss' kappa of an items x categories count table (same raters per item)."""
    table = np.asarray(counts, dtype=float)
    if table.ndim != 2 or table.shape[0] == 0:
        return None
    raters = table.sum(axis=1)
    if raters.min() != raters.max() or raters[0] < 2:
        raise ValueError("Fleiss' kappa needs the same number (>= 2) of ratings per item")
    n, items = raters[0], table.shape[0]
    per_item = ((table**2).sum(axis=1) - n) / (n * (n - 1))
    observed = per_item.mean()
    shares = table.sum(axis=0) / (items * n)
    expected = float((shares**2).sum())
    if math.isclose(expected, 1.0):
        return 1.0 if math.isclose(observed, 1.0) else None
    return float((observed - expected) / (1 - expected))


def cohen_kappa(a: Sequence[str], b: Sequence[str]) -> float | None:
    """Cohen's kappa of two annotators over the same items (scikit-learn)."""
    if len(a) < 2:
        return None
    if len(set(a) | set(b)) == 1:
        return 1.0  # both always chose the same single label: perfect, not undefined
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = float(cohen_kappa_score(list(a), list(b)))
    return None if math.isnan(value) else value


def krippendorff_alpha(rows: dict[str, dict[str, Any]], *, interval: bool = False) -> float | None:
    """Krippendorff's alpha from annotator -> item -> value (missing values allowed)."""
    items = sorted({item for values in rows.values() for item in values})
    if len(rows) < 2 or len(items) < 1:
        return None
    codes: dict[str, float] = {}
    if not interval:
        distinct = sorted({str(v) for values in rows.values() for v in values.values()})
        codes = {value: float(i) for i, value in enumerate(distinct)}
        if len(distinct) < 2:
            return 1.0

    def convert(value: Any) -> float:
        return float(value) if interval else codes[str(value)]

    data = [
        [convert(values[item]) if item in values else np.nan for item in items]
        for values in rows.values()
    ]
    try:
        value = float(
            krippendorff.alpha(
                reliability_data=np.asarray(data),
                level_of_measurement="interval" if interval else "nominal",
            )
        )
    except (ValueError, ZeroDivisionError):
        return None
    return None if math.isnan(value) else value


@dataclass
class Report:
    """Agreement of one project (or any set of annotations)."""

    items: int = 0
    annotations: int = 0
    cohen_kappa: float | None = None
    fleiss_kappa: float | None = None
    krippendorff_alpha: float | None = None
    pairs: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "items": self.items,
            "annotations": self.annotations,
            "cohen_kappa": _round(self.cohen_kappa),
            "fleiss_kappa": _round(self.fleiss_kappa),
            "krippendorff_alpha": _round(self.krippendorff_alpha),
            "pairs": self.pairs,
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def report(annotations: Iterable[tuple[str, str, Any]], *, interval: bool = False) -> Report:
    """Agreement over (item, annotator, value) triples; only items with 2+ answers count."""
    by_item: dict[str, dict[str, Any]] = defaultdict(dict)
    for item, annotator, value in annotations:
        by_item[item][annotator] = value
    shared = {item: answers for item, answers in by_item.items() if len(answers) >= 2}
    out = Report(items=len(shared), annotations=sum(len(a) for a in shared.values()))
    if not shared:
        return out
    rows: dict[str, dict[str, Any]] = defaultdict(dict)
    for item, answers in shared.items():
        for annotator, value in answers.items():
            rows[annotator][item] = value
    kappas = []
    for first, second in combinations(sorted(rows), 2):
        common = sorted(set(rows[first]) & set(rows[second]))
        kappa = cohen_kappa(
            [str(rows[first][i]) for i in common], [str(rows[second][i]) for i in common]
        )
        if kappa is not None:
            kappas.append(kappa)
            out.pairs.append(
                {"annotators": [first, second], "items": len(common), "kappa": _round(kappa)}
            )
    out.cohen_kappa = float(np.mean(kappas)) if kappas else None
    out.krippendorff_alpha = krippendorff_alpha(rows, interval=interval)
    sizes = Counter(len(answers) for answers in shared.values())
    raters = sizes.most_common(1)[0][0]
    categories = sorted({str(v) for answers in shared.values() for v in answers.values()})
    table = [
        [sum(1 for v in answers.values() if str(v) == c) for c in categories]
        for answers in shared.values()
        if len(answers) == raters
    ]
    out.fleiss_kappa = fleiss_kappa(table) if table else None
    return out


def majority(values: Sequence[str], *, quorum: float = 0.5) -> str | None:
    """The value more than ``quorum`` of the answers share, else None (a conflict)."""
    if not values:
        return None
    value, count = Counter(values).most_common(1)[0]
    return value if count / len(values) > quorum else None
