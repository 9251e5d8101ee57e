"""Suggestions and confidence routing (Prodigy-style, open).

Rules (keywords or regular expressions per label) suggest a label with a confidence; a
suggestion at or above the project's threshold becomes the final label (provenance
``rule`` or ``model``), anything below goes to people, the least confident first
(uncertainty sampling: tasks without a suggestion count as confidence 0).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from services.labeling.schema import ProjectSpec


@dataclass(frozen=True)
class Suggestion:
    label: Any
    confidence: float
    source: str  # "rule:<index>" or "model:<name>@<version>"

    @property
    def provenance(self) -> str:
        return self.source.split(":", 1)[0]


def rule_suggestion(spec: ProjectSpec, text: str) -> Suggestion | None:
    """The best rule match for ``text``; matches of several labels lower the confidence."""
    if spec.task not in ("classification", "multilabel"):
        return None
    lowered = text.lower()
    hits: dict[str, tuple[float, int]] = {}
    for index, rule in enumerate(spec.rules):
        matched = any(
            re.search(rf"\b{re.escape(word.lower())}\b", lowered) for word in rule.keywords
        ) or bool(rule.regex and re.search(rule.regex, text, re.IGNORECASE))
        if matched and rule.confidence > hits.get(rule.label, (-1.0, 0))[0]:
            hits[rule.label] = (rule.confidence, index)
    if not hits:
        return None
    if spec.task == "multilabel":
        labels = sorted(hits)
        confidence = min(c for c, _ in hits.values())
        return Suggestion(labels, confidence, f"rule:{min(i for _, i in hits.values())}")
    label, (confidence, index) = max(hits.items(), key=lambda kv: (kv[1][0], -kv[1][1]))
    if len(hits) > 1:  # competing rules: the evidence is split
        confidence = confidence / len(hits)
    return Suggestion(label, round(confidence, 4), f"rule:{index}")


def route(spec: ProjectSpec, suggestion: Suggestion | None) -> str:
    """``auto`` when the suggestion is confident enough, else ``human``."""
    if suggestion is not None and suggestion.confidence >= spec.auto_threshold:
        return "auto"
    return "human"


def priority(suggestion: Suggestion | None) -> float:
    """Queue order: lower first. The least confident suggestion is the most informative."""
    return 0.0 if suggestion is None else suggestion.confidence
