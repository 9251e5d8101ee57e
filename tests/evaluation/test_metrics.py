"""Metrics, fairness and paired tests agree with the reference libraries on fixed examples."""

from __future__ import annotations

import math

import numpy as np
import pytest
import sacrebleu
from fairlearn.metrics import demographic_parity_difference
from rouge_score import rouge_scorer
from scipy.stats import binomtest
from sklearn.metrics import f1_score

from services.evaluation import fairness, metrics, regression
from services.evaluation.config import GateConfig
from services.evaluation.gates import decide

pytestmark = pytest.mark.unit

REFS = ["billing", "shipping", "refund", "billing", "refund", "shipping"]
PREDS = ["billing", "refund", "refund", "billing", "<other>", "shipping"]


def test_classification_matches_scikit_learn() -> None:
    got = metrics.classification(REFS, PREDS)
    assert got["accuracy"] == pytest.approx(4 / 6)
    labels = sorted(set(REFS))
    assert got["macro_f1"] == pytest.approx(
        f1_score(REFS, PREDS, labels=labels, average="macro", zero_division=0)
    )
    per = got["per_label"]
    assert per["refund"]["precision"] == pytest.approx(0.5)  # predicted twice, right once
    assert per["refund"]["recall"] == pytest.approx(0.5)
    assert per["billing"]["support"] == 2


def test_normalize_and_label_mapping() -> None:
    assert metrics.normalize("  Billing \nand more") == "billing"
    assert metrics.normalize("") == ""
    assert metrics.predicted_labels(["Refund\n", "what?"], ["refund", "billing"]) == [
        "refund",
        metrics.OTHER,
    ]


def test_text_scores_match_rouge_score_and_sacrebleu() -> None:
    refs = ["the parcel arrived late", "refund the order"]
    outs = ["the parcel was late", "refund my order please"]
    scorer = rouge_scorer.RougeScorer(["rougeL"])
    assert metrics.rouge_l(refs, outs) == pytest.approx(
        [scorer.score(r, o)["rougeL"].fmeasure for r, o in zip(refs, outs, strict=True)]
    )
    corpus = metrics.corpus_text_scores(refs, outs)
    assert corpus["bleu"] == pytest.approx(sacrebleu.corpus_bleu(outs, [refs]).score)
    assert corpus["chrf"] == pytest.approx(sacrebleu.corpus_chrf(outs, [refs]).score)


def test_bootstrap_interval_brackets_the_mean_and_is_deterministic() -> None:
    values = [1.0] * 70 + [0.0] * 30
    ci = metrics.bootstrap_ci(values, samples=500, seed=3)
    assert ci.value == pytest.approx(0.7)
    assert ci.low < 0.7 < ci.high
    assert ci.low > 0.55
    assert ci.high < 0.85
    assert ci == metrics.bootstrap_ci(values, samples=500, seed=3)


def test_mcnemar_is_the_exact_binomial_on_discordant_pairs() -> None:
    cand = [True] * 10 + [False] * 12 + [True] * 8
    champ = [True] * 10 + [True] * 12 + [False] * 8
    result = regression.mcnemar(cand, champ)
    assert result.p_value == pytest.approx(binomtest(8, 20, 0.5).pvalue)
    assert not result.worse  # 8 vs 12 is not significant
    much_worse = regression.mcnemar([False] * 20, [True] * 20)
    assert much_worse.worse
    assert much_worse.p_value < 1e-5


def test_paired_bootstrap_flags_a_consistent_drop_only() -> None:
    rng = np.random.default_rng(0)
    champ = rng.uniform(0.4, 0.6, 50)
    assert regression.paired_bootstrap("rouge_l", champ - 0.1, champ).worse
    assert not regression.paired_bootstrap("rouge_l", champ + rng.normal(0, 0.01, 50), champ).worse


def test_slices_gap_and_fairlearn_parity() -> None:
    refs = ["a", "b", "a", "b", "a", "b", "a", "b"]
    preds = ["a", "b", "a", "b", "b", "a", "b", "a"]
    correct = [r == p for r, p in zip(refs, preds, strict=True)]
    metas = [{"region": "eu"}] * 4 + [{"region": "us"}] * 4
    out = fairness.by_slice(correct, refs, preds, metas, attributes=["region"], min_slice_size=2)
    region = out["region"]
    assert region["slices"]["eu"] == {"n": 4, "accuracy": 1.0}
    assert region["slices"]["us"]["accuracy"] == 0.0
    assert (region["gap"], region["worst"], region["best"]) == (1.0, "us", "eu")
    groups = [m["region"] for m in metas]
    expected = max(
        demographic_parity_difference(
            [r == label for r in refs], [p == label for p in preds], sensitive_features=groups
        )
        for label in ("a", "b")
    )
    assert region["demographic_parity_difference"] == pytest.approx(expected)
    assert fairness.largest_gap(out) == (1.0, "region=us vs region=eu")


def test_equal_slices_have_a_zero_gap_not_no_comparison() -> None:
    metas = [{"region": "eu"}, {"region": "us"}] * 3
    out = fairness.by_slice([1.0] * 6, ["a"] * 6, ["a"] * 6, metas, attributes=["region"])
    gap, where = fairness.largest_gap(out)
    assert gap == 0.0
    assert where is not None


def test_slice_attributes_skip_constant_and_free_text_keys() -> None:
    metas = [{"region": r, "tier": "gold", "id": str(i)} for i, r in enumerate("ab" * 10)]
    assert fairness.slice_attributes(metas, None) == ["region"]
    assert fairness.slice_attributes(metas, ["tier", "nope"]) == ["tier"]


def test_gates_explain_their_verdicts() -> None:
    result = {
        "scores": {"accuracy": 0.4, "latency_p95_ms": 30.0},
        "regression": [
            {
                "metric": "accuracy",
                "candidate": 0.4,
                "champion": 0.9,
                "p_value": 0.001,
                "test": "mcnemar-exact",
                "worse": True,
            },
            {
                "metric": "chrf",
                "candidate": 1.0,
                "champion": 2.0,
                "p_value": 0.0,
                "test": "paired-bootstrap",
                "worse": True,
            },
        ],
        "champion": {"version": "v1"},
        "fairness": {"region": {"gap": 0.5, "worst": "us", "best": "eu"}},
    }
    config = GateConfig(min_accuracy=0.5, max_fairness_gap=0.2, max_latency_ms=10)
    verdicts = {v.gate: v for v in decide(config, result)}
    assert not verdicts["min_accuracy"].passed
    assert not verdicts["no_regression"].passed
    assert "accuracy 0.400 vs champion 0.900" in verdicts["no_regression"].reason
    assert "chrf" not in verdicts["no_regression"].reason  # not a blocking metric by default
    assert not verdicts["max_fairness_gap"].passed
    assert "region=us" in verdicts["max_fairness_gap"].reason
    assert not verdicts["max_latency_ms"].passed
    assert math.isclose(verdicts["max_fairness_gap"].value or 0, 0.5)


def test_judge_agreement_is_quadratic_kappa_and_needs_enough_pairs() -> None:
    from sklearn.metrics import cohen_kappa_score

    from services.evaluation.judge import agreement, parse_rating

    judge = [5, 4, 1, 2, None, 3, 5, 1, 2, 4, 5]
    human = [5, 5, 1, 1, 3, 3, 4, 1, 2, 4, None]
    pairs = [(j, h) for j, h in zip(judge, human, strict=True) if j and h]
    expected = cohen_kappa_score(
        [p[0] for p in pairs], [p[1] for p in pairs], weights="quadratic", labels=[1, 2, 3, 4, 5]
    )
    got = agreement(judge, human, min_pairs=5)
    assert got["pairs"] == 9
    assert got["kappa"] == pytest.approx(expected)
    assert agreement(judge, human, min_pairs=20)["kappa"] is None
    assert parse_rating(" Rating: 4/5") == 4
    assert parse_rating("no idea") is None
