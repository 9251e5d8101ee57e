"""Agreement metrics against hand-computed, published values."""

from __future__ import annotations

import math

import pytest

from services.labeling import agreement

pytestmark = pytest.mark.unit

# Fleiss (1971) as worked on Wikipedia ("Fleiss' kappa"): 10 items, 14 raters, 5 categories.
FLEISS_TABLE = [
    [0, 0, 0, 0, 14],
    [0, 2, 6, 4, 2],
    [0, 0, 3, 5, 6],
    [0, 3, 9, 2, 0],
    [2, 2, 8, 1, 1],
    [7, 7, 0, 0, 0],
    [3, 2, 6, 3, 0],
    [2, 5, 3, 2, 2],
    [6, 5, 2, 1, 0],
    [0, 2, 2, 3, 7],
]

# Krippendorff (2011), "Computing Krippendorff's alpha-reliability", 4 coders x 12 units with
# missing values: nominal alpha 0.743, interval alpha 0.849.
KRIPP = {
    "A": [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
    "B": [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
    "C": [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
    "D": [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
}


def test_fleiss_kappa_matches_the_worked_example() -> None:
    value = agreement.fleiss_kappa(FLEISS_TABLE)
    assert value is not None
    assert math.isclose(value, 0.2099, abs_tol=1e-4)  # P̄ = 0.378, P̄e = 0.213


def test_fleiss_kappa_perfect_and_unequal_raters() -> None:
    assert agreement.fleiss_kappa([[3, 0], [0, 3]]) == pytest.approx(1.0)
    assert agreement.fleiss_kappa([[3, 0], [3, 0]]) == 1.0  # one category only, all agree
    with pytest.raises(ValueError, match="same number"):
        agreement.fleiss_kappa([[2, 0], [1, 2]])


def test_cohen_kappa_by_hand() -> None:
    # 50 items: yes/yes 20, yes/no 5, no/yes 10, no/no 15 -> po 0.7, pe 0.5, kappa 0.4
    a = ["yes"] * 25 + ["no"] * 25
    b = ["yes"] * 20 + ["no"] * 5 + ["yes"] * 10 + ["no"] * 15
    assert agreement.cohen_kappa(a, b) == pytest.approx(0.4)
    assert agreement.cohen_kappa(["x", "x"], ["x", "x"]) == 1.0


def test_krippendorff_alpha_nominal_and_interval_with_missing_values() -> None:
    rows = {
        coder: {f"u{i}": v for i, v in enumerate(values) if v is not None}
        for coder, values in KRIPP.items()
    }
    nominal = agreement.krippendorff_alpha(rows)
    interval = agreement.krippendorff_alpha(rows, interval=True)
    assert nominal == pytest.approx(0.743, abs=1e-3)
    assert interval == pytest.approx(0.849, abs=1e-3)


def test_report_over_triples_and_majority() -> None:
    triples = []
    for item in range(10):
        triples.append((f"i{item}", "ann", "pos" if item < 5 else "neg"))
        triples.append((f"i{item}", "bob", "pos" if item < 4 else "neg"))  # one disagreement
    triples.append(("lonely", "ann", "pos"))  # a single answer does not count
    report = agreement.report(triples)
    # po = 0.9; pe = 0.5*0.4 + 0.5*0.6 = 0.5 -> kappa 0.8
    assert report.items == 10
    assert report.cohen_kappa == pytest.approx(0.8)
    assert report.fleiss_kappa is not None
    assert 0.7 < report.fleiss_kappa < 0.81
    assert report.krippendorff_alpha is not None
    assert report.krippendorff_alpha > 0.7
    assert agreement.majority(["a", "a", "b"]) == "a"
    assert agreement.majority(["a", "b"]) is None
