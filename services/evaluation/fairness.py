"""Per-slice metrics over metadata attributes, the largest gap, and Fairlearn's parity measures."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

MISSING = "<missing>"


def slice_attributes(
    metas: Sequence[Mapping[str, Any]], wanted: Sequence[str] | None, max_values: int = 12
) -> list[str]:
    """The attributes to slice on: the configured ones, else every low-cardinality meta key."""
    if wanted:
        return [a for a in wanted if any(a in m for m in metas)]
    keys = sorted({k for m in metas for k, v in m.items() if isinstance(v, str | int | bool)})
    return [k for k in keys if 1 < len({str(m.get(k, MISSING)) for m in metas}) <= max_values]


def by_slice(
    correct: Sequence[float] | np.ndarray,
    references: Sequence[str],
    predictions: Sequence[str],
    metas: Sequence[Mapping[str, Any]],
    *,
    attributes: Sequence[str],
    min_slice_size: int = 1,
) -> dict[str, dict[str, Any]]:
    """attribute -> {slices: {value: {n, accuracy}}, gap, worst, best, dp/eo differences}."""
    from fairlearn.metrics import (
        MetricFrame,
        demographic_parity_difference,
        equalized_odds_difference,
    )

    hits = np.asarray(correct, dtype=float)
    result: dict[str, dict[str, Any]] = {}
    for attribute in attributes:
        groups = np.array([str(m.get(attribute, MISSING)) for m in metas])
        frame = MetricFrame(
            metrics={"accuracy": lambda y, _p: float(np.mean(y)), "n": lambda y, _p: len(y)},
            y_true=hits,
            y_pred=hits,
            sensitive_features=groups,
        )
        table = frame.by_group
        slices = {
            str(value): {"n": int(row["n"]), "accuracy": float(row["accuracy"])}
            for value, row in table.iterrows()
        }
        sized = {k: v for k, v in slices.items() if v["n"] >= min_slice_size}
        entry: dict[str, Any] = {"slices": slices, "gap": 0.0, "worst": None, "best": None}
        if len(sized) >= 2:
            worst = min(sized, key=lambda k: sized[k]["accuracy"])
            best = max(sized, key=lambda k: sized[k]["accuracy"])
            entry.update(
                gap=sized[best]["accuracy"] - sized[worst]["accuracy"], worst=worst, best=best
            )
        dp, eo = [], []
        for label in sorted(set(references)):
            y_true = np.array([r == label for r in references], dtype=int)
            y_pred = np.array([p == label for p in predictions], dtype=int)
            dp.append(demographic_parity_difference(y_true, y_pred, sensitive_features=groups))
            eo.append(equalized_odds_difference(y_true, y_pred, sensitive_features=groups))
        entry["demographic_parity_difference"] = float(np.nanmax(dp)) if dp else 0.0
        entry["equalized_odds_difference"] = float(np.nanmax(eo)) if eo else 0.0
        result[attribute] = entry
    return result


def largest_gap(slices: Mapping[str, Mapping[str, Any]]) -> tuple[float, str | None]:
    """The largest accuracy gap over every attribute, and a sentence naming its slices."""
    gap, where = 0.0, None
    for attribute, entry in slices.items():
        if entry["worst"] is not None and (where is None or entry["gap"] > gap):
            gap = float(entry["gap"])
            where = f"{attribute}={entry['worst']} vs {attribute}={entry['best']}"
    return gap, where
