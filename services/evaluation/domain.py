"""The evaluation itself: examples in, numbers, slices and paired tests out.

Pure Python over the Generator port: no broker, no database, no HTTP.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from services.evaluation import fairness, metrics, regression
from services.evaluation.config import EvaluationSettings, GateConfig
from services.evaluation.judge import agreement
from services.evaluation.ports import Generation, Generator, Judge
from shared.datasets import LabeledExample


@dataclass(frozen=True)
class Example:
    prompt: str
    reference: str
    meta: dict[str, Any] = field(default_factory=dict)
    source: str = "dataset"
    task: str = "classification"
    label: Any = None


def examples_from(rows: Iterable[LabeledExample], split: str | None, source: str) -> list[Example]:
    """Labeled rows with an expected completion (of one split, when given)."""
    return [
        Example(row.prompt, row.completion, dict(row.meta), source, row.task, row.label)
        for row in rows
        if row.completion is not None and (split is None or row.split == split)
    ]


@dataclass(frozen=True)
class Scored:
    """One model's per-example scores (kept for slicing and pairing)."""

    generation: Generation
    references: list[str]
    predictions: list[str]  # mapped onto the label set
    correct: np.ndarray
    rouge: list[float]
    chrf: list[float]


class Evaluator:
    def __init__(
        self, generator: Generator, settings: EvaluationSettings, judge: Judge | None = None
    ) -> None:
        self.generator = generator
        self.settings = settings
        self.judge = judge

    def score(self, model_dirs: list[str], examples: Sequence[Example]) -> list[Scored]:
        prompts = [self.settings.prompt_template.format(prompt=e.prompt) for e in examples]
        refs = [e.reference for e in examples]
        generations = self.generator.generate(model_dirs, prompts, refs)
        return [self._scored(g, refs) for g in generations]

    @staticmethod
    def _scored(generation: Generation, refs: list[str]) -> Scored:
        outputs = [metrics.normalize(o) for o in generation.outputs]
        gold = [metrics.normalize(r) for r in refs]
        predictions = metrics.predicted_labels(generation.outputs, gold)
        correct = np.array([o == g for o, g in zip(outputs, gold, strict=True)], dtype=float)
        raw = [o.strip() for o in generation.outputs]
        return Scored(
            generation,
            gold,
            predictions,
            correct,
            metrics.rouge_l([r.strip() for r in refs], raw),
            metrics.sentence_chrf([r.strip() for r in refs], raw),
        )

    def evaluate(
        self,
        candidate_dir: str,
        examples: Sequence[Example],
        config: GateConfig,
        champion: tuple[str, str] | None = None,
        calibration: Sequence[Example] = (),
    ) -> dict[str, Any]:
        """Score the candidate (and the champion, ``(version, dir)``, on the same examples)."""
        if not examples:
            raise ValueError("no examples to evaluate: the test split and golden sets are empty")
        dirs = [candidate_dir] + ([champion[1]] if champion else [])
        cand, *others = self.score(dirs, examples)
        result = self.summarize(cand, examples, config)
        result["champion"] = None
        result["regression"] = []
        if self.judge is not None and self.settings.judge is not None:
            result["judge"] = self.judged(cand, examples, calibration)
            if result["judge"]["mean"] is not None:
                result["scores"]["judge_score"] = result["judge"]["mean"]
        if champion is not None:
            version, champ = champion[0], others[0]
            result["champion"] = {
                "version": version,
                "scores": self.summarize(champ, examples, config)["scores"],
            }
            result["regression"] = [t.as_dict() for t in self.paired(cand, champ, config.alpha)]
        return result

    def summarize(
        self, scored: Scored, examples: Sequence[Example], config: GateConfig
    ) -> dict[str, Any]:
        s = self.settings
        raw = [o.strip() for o in scored.generation.outputs]
        refs = [e.reference.strip() for e in examples]
        cls = metrics.classification(scored.references, scored.predictions)
        nll = [v for v in scored.generation.nll if v is not None and math.isfinite(v)]
        scores: dict[str, float] = {
            "accuracy": float(scored.correct.mean()),
            "macro_f1": float(cls["macro_f1"]),  # type: ignore[arg-type]
            "rouge_l": float(np.mean(scored.rouge)),
            **metrics.corpus_text_scores(refs, raw),
        }
        if nll:
            scores["perplexity"] = float(math.exp(np.mean(nll)))
        if scored.generation.latency_ms:
            scores["latency_p95_ms"] = float(np.percentile(scored.generation.latency_ms, 95))
        ci = {"samples": s.bootstrap_samples, "seed": s.seed}
        intervals = {
            "accuracy": metrics.bootstrap_ci(scored.correct, samples=ci["samples"], seed=s.seed),
            "rouge_l": metrics.bootstrap_ci(scored.rouge, samples=ci["samples"], seed=s.seed),
            "chrf": metrics.bootstrap_ci(scored.chrf, samples=ci["samples"], seed=s.seed),
        }
        metas = [e.meta for e in examples]
        attributes = fairness.slice_attributes(metas, config.fairness_attributes)
        return {
            "examples": len(examples),
            "sources": sorted({e.source for e in examples}),
            "scores": scores,
            "intervals": {k: v.as_dict() for k, v in intervals.items()},
            "per_label": cls["per_label"],
            "confusion": metrics.confusion(scored.references, scored.predictions),
            "fairness": fairness.by_slice(
                scored.correct,
                scored.references,
                scored.predictions,
                metas,
                attributes=attributes,
                min_slice_size=config.min_slice_size,
            ),
            "samples": [
                {"prompt": e.prompt[:200], "reference": e.reference[:200], "output": o[:200]}
                for e, o in list(zip(examples, raw, strict=True))[:20]
            ],
        }

    def judged(
        self, cand: Scored, examples: Sequence[Example], calibration: Sequence[Example]
    ) -> dict[str, Any]:
        """The judge's agreement with human ratings, then its mean rating of the candidate."""
        assert self.judge is not None
        assert self.settings.judge is not None
        config = self.settings.judge
        human = [e.label for e in calibration]
        rated = self.judge.rate([e.prompt for e in calibration], [e.reference for e in calibration])
        agreed = agreement(rated, human, config.min_pairs)
        trusted = agreed["kappa"] is not None and agreed["kappa"] >= config.min_kappa
        ratings = (
            self.judge.rate(
                [e.prompt for e in examples], [o.strip() for o in cand.generation.outputs]
            )
            if trusted
            else []
        )
        valid = [r for r in ratings if r is not None]
        return {
            "model": config.model,
            **agreed,
            "min_kappa": config.min_kappa,
            "trusted": trusted,
            "mean": float(np.mean(valid)) if valid else None,
            "min_score": config.min_score,
        }

    def paired(self, cand: Scored, champ: Scored, alpha: float) -> list[regression.PairedResult]:
        s = self.settings
        return [
            regression.mcnemar(cand.correct.astype(bool), champ.correct.astype(bool), alpha),
            regression.paired_bootstrap(
                "rouge_l",
                cand.rouge,
                champ.rouge,
                alpha=alpha,
                samples=s.bootstrap_samples,
                seed=s.seed,
            ),
            regression.paired_bootstrap(
                "chrf",
                cand.chrf,
                champ.chrf,
                alpha=alpha,
                samples=s.bootstrap_samples,
                seed=s.seed,
            ),
        ]
