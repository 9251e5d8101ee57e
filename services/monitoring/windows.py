"""Rolling windows of inference records per model version, and their summary statistics."""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

_WORD = re.compile(r"[a-z0-9<>_]+")


def tokens(text: str) -> list[str]:
    """Lower-cased word tokens (pseudonym placeholders such as <PERSON_1a2b> stay whole)."""
    return _WORD.findall(text.lower())


def predicted_label(text: str, limit: int = 40) -> str:
    """The label a response predicts: its first line, normalized (classification outputs)."""
    first = text.strip().splitlines()[0] if text.strip() else ""
    return " ".join(tokens(first))[:limit] or "<empty>"


@dataclass(frozen=True)
class Observation:
    """One anonymized inference record, reduced to what monitoring measures."""

    at: datetime
    model: str
    version: str
    prompt: str
    output: str
    prompt_tokens: int
    completion_tokens: int
    latency_ms: float
    ttft_ms: float | None
    error: bool
    request_id: str = ""

    @property
    def label(self) -> str:
        return predicted_label(self.output)

    @property
    def tokens_per_s(self) -> float | None:
        if self.error or self.latency_ms <= 0 or self.completion_tokens <= 0:
            return None
        return self.completion_tokens / (self.latency_ms / 1000)


def _pct(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def summarize(observations: list[Observation]) -> dict[str, Any]:
    """Latency percentiles, TTFT, tokens/s, error rate and label mix of some records."""
    ok = [o for o in observations if not o.error]
    latency = [o.latency_ms for o in ok]
    ttft = [o.ttft_ms for o in ok if o.ttft_ms is not None]
    tps = [t for o in ok if (t := o.tokens_per_s) is not None]
    labels: dict[str, int] = {}
    for o in ok:
        labels[o.label] = labels.get(o.label, 0) + 1
    span_s = (
        (observations[-1].at - observations[0].at).total_seconds() if len(observations) > 1 else 0
    )
    return {
        "requests": len(observations),
        "errors": len(observations) - len(ok),
        "error_rate": (len(observations) - len(ok)) / len(observations) if observations else 0.0,
        "latency_p50_ms": _pct(latency, 50),
        "latency_p95_ms": _pct(latency, 95),
        "latency_p99_ms": _pct(latency, 99),
        "ttft_p50_ms": _pct(ttft, 50),
        "ttft_p95_ms": _pct(ttft, 95),
        "tokens_per_s": float(np.mean(tps)) if tps else None,
        "rps": len(observations) / span_s if span_s > 0 else None,
        "labels": dict(sorted(labels.items(), key=lambda kv: -kv[1])[:10]),
    }


@dataclass
class VersionWindow:
    """Records of one model version: a bounded history, the reference, the pending window."""

    model: str
    version: str
    size: int
    history: deque[Observation] = field(default_factory=lambda: deque(maxlen=2000))
    reference: list[Observation] = field(default_factory=list)
    current: list[Observation] = field(default_factory=list)
    windows_evaluated: int = 0
    seen: int = 0  # records ever added (the history is bounded)
    reference_vectors: Any = None  # embeddings of the reference, computed once

    def add(self, observation: Observation) -> list[Observation] | None:
        """Add a record; returns a full current window when one completes (tumbling).

        The first full window becomes the reference (the version's baseline after its
        promotion) unless one was set from elsewhere.
        """
        self.history.append(observation)
        self.seen += 1
        if len(self.reference) < self.size:
            self.reference.append(observation)
            return None
        self.current.append(observation)
        if len(self.current) < self.size:
            return None
        full, self.current = self.current, []
        self.windows_evaluated += 1
        return full


@dataclass
class FeedbackWindow:
    """Ratings per model (the reference mean is the first ``size`` ratings)."""

    size: int
    reference: list[float] = field(default_factory=list)
    recent: deque[float] = field(default_factory=lambda: deque(maxlen=200))

    def add(self, rating: float) -> None:
        if len(self.reference) < self.size:
            self.reference.append(rating)
        self.recent.append(rating)

    @property
    def mean(self) -> float | None:
        return float(np.mean(self.recent)) if self.recent else None

    @property
    def reference_mean(self) -> float | None:
        return float(np.mean(self.reference)) if len(self.reference) >= self.size else None
