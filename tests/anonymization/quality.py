"""Precision, recall and F2 per entity type of a detector on the templated corpus."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tests.anonymization.corpus import Doc

# detector output types -> gold types (anything else is not scored)
TYPE_MAP = {
    "PERSON": "PERSON",
    "EMAIL_ADDRESS": "EMAIL_ADDRESS",
    "PHONE_NUMBER": "PHONE_NUMBER",
    "CREDIT_CARD": "CREDIT_CARD",
    "IBAN_CODE": "IBAN_CODE",
    "IP_ADDRESS": "IP_ADDRESS",
    "LOCATION": "ADDRESS",
    "STREET_ADDRESS": "ADDRESS",
}
GOLD_TYPES = (
    "PERSON",
    "EMAIL_ADDRESS",
    "PHONE_NUMBER",
    "CREDIT_CARD",
    "IBAN_CODE",
    "IP_ADDRESS",
    "ADDRESS",
)

Spans = list[tuple[int, int, str]]
Detector = Callable[[Sequence[str]], list[Spans]]


@dataclass
class Score:
    tp_gold: int = 0
    gold: int = 0
    tp_pred: int = 0
    pred: int = 0

    @property
    def precision(self) -> float:
        return self.tp_pred / self.pred if self.pred else 1.0

    @property
    def recall(self) -> float:
        return self.tp_gold / self.gold if self.gold else 1.0

    @property
    def f2(self) -> float:
        p, r = self.precision, self.recall
        return 5 * p * r / (4 * p + r) if p + r else 0.0


def _overlaps(a: tuple[int, int, str], b: tuple[int, int, str]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def score(docs: Sequence[Doc], predictions: Sequence[Spans]) -> dict[str, Score]:
    """Lenient span matching: a gold entity is found when a prediction of its type overlaps."""
    scores = {t: Score() for t in (*GOLD_TYPES, "ALL")}
    for doc, raw in zip(docs, predictions, strict=True):
        preds = [(s, e, TYPE_MAP[t]) for s, e, t in raw if t in TYPE_MAP]
        for gold in doc.spans:
            hit = any(p[2] == gold[2] and _overlaps(p, gold) for p in preds)
            for key in (gold[2], "ALL"):
                scores[key].gold += 1
                scores[key].tp_gold += hit
        for pred in preds:
            hit = any(g[2] == pred[2] and _overlaps(pred, g) for g in doc.spans)
            for key in (pred[2], "ALL"):
                scores[key].pred += 1
                scores[key].tp_pred += hit
    return scores


def table(ours: dict[str, Score], vanilla: dict[str, Score]) -> str:
    lines = [
        "| entity | ours P | ours R | ours F2 | vanilla P | vanilla R | vanilla F2 |",
        "|---|---|---|---|---|---|---|",
    ]
    for key in (*GOLD_TYPES, "ALL"):
        a, b = ours[key], vanilla[key]
        lines.append(
            f"| {key} | {a.precision:.3f} | {a.recall:.3f} | {a.f2:.3f} | "
            f"{b.precision:.3f} | {b.recall:.3f} | {b.f2:.3f} |"
        )
    return "\n".join(lines)


def presidio_spans(analyzer_results: list[list[object]]) -> list[Spans]:
    return [
        [(r.start, r.end, r.entity_type) for r in results]  # type: ignore[attr-defined]
        for results in analyzer_results
    ]
