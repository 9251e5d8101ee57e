"""Scores from the field's libraries: scikit-learn, rouge-score, sacrebleu; bootstrap intervals.

Every metric is computed per example where it can be (so it can be bootstrapped, sliced and
paired against the champion) and aggregated with the library's own corpus-level function.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

OTHER = "<other>"


def normalize(text: str | None) -> str:
    """The answer a generation gives: first line, trimmed, case-folded."""
    return (text or "").strip().splitlines()[0].strip().casefold() if (text or "").strip() else ""


def predicted_labels(outputs: Sequence[str], labels: Sequence[str]) -> list[str]:
    """Map free generations onto the label set (anything else is ``<other>``)."""
    known = set(labels)
    return [out if out in known else OTHER for out in (normalize(o) for o in outputs)]


@dataclass(frozen=True)
class Interval:
    value: float
    low: float
    high: float

    def as_dict(self) -> dict[str, float]:
        return {"value": self.value, "low": self.low, "high": self.high}


def bootstrap_ci(
    per_example: Sequence[float] | np.ndarray,
    *,
    statistic: Callable[[np.ndarray], float] = np.mean,
    samples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Interval:
    """Percentile bootstrap interval of ``statistic`` over examples."""
    values = np.asarray(per_example, dtype=float)
    if values.size == 0:
        return Interval(float("nan"), float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, values.size, size=(samples, values.size))
    stats = np.array([statistic(values[row]) for row in idx])
    alpha = (1 - confidence) / 2
    return Interval(
        float(statistic(values)),
        float(np.quantile(stats, alpha)),
        float(np.quantile(stats, 1 - alpha)),
    )


def classification(references: Sequence[str], predictions: Sequence[str]) -> dict[str, object]:
    """Accuracy, macro-F1 and per-label precision/recall/F1 (scikit-learn)."""
    from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support

    labels = sorted(set(references))
    precision, recall, f1, support = precision_recall_fscore_support(
        references, predictions, labels=labels, zero_division=0
    )
    return {
        "accuracy": float(accuracy_score(references, predictions)),
        "macro_f1": float(
            f1_score(references, predictions, labels=labels, average="macro", zero_division=0)
        ),
        "per_label": {
            label: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, label in enumerate(labels)
        },
    }


def confusion(references: Sequence[str], predictions: Sequence[str]) -> dict[str, object]:
    from sklearn.metrics import confusion_matrix

    labels = sorted(set(references) | set(predictions))
    matrix = confusion_matrix(references, predictions, labels=labels)
    return {"labels": labels, "matrix": matrix.tolist()}


def rouge_l(references: Sequence[str], outputs: Sequence[str]) -> list[float]:
    """Per-example ROUGE-L F-measure (rouge-score)."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    return [
        float(scorer.score(ref, out)["rougeL"].fmeasure)
        for ref, out in zip(references, outputs, strict=True)
    ]


def corpus_text_scores(references: Sequence[str], outputs: Sequence[str]) -> dict[str, float]:
    """Corpus BLEU and chrF (sacrebleu), on its 0-100 scale."""
    import sacrebleu

    refs = [list(references)]
    return {
        "bleu": float(sacrebleu.corpus_bleu(list(outputs), refs).score),
        "chrf": float(sacrebleu.corpus_chrf(list(outputs), refs).score),
    }


def sentence_chrf(references: Sequence[str], outputs: Sequence[str]) -> list[float]:
    import sacrebleu

    return [
        float(sacrebleu.sentence_chrf(out, [ref]).score)
        for ref, out in zip(references, outputs, strict=True)
    ]
