"""Gate verdicts from the numbers; each verdict says why, in one sentence."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from services.evaluation.config import GateConfig
from services.evaluation.fairness import largest_gap


@dataclass(frozen=True)
class Verdict:
    gate: str
    passed: bool
    value: float | None
    threshold: float | None
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def decide(config: GateConfig, result: Mapping[str, Any]) -> list[Verdict]:
    """Apply the configured gates to an evaluation result (see domain.Evaluator)."""
    verdicts: list[Verdict] = []
    accuracy = float(result["scores"]["accuracy"])
    verdicts.append(
        Verdict(
            "min_accuracy",
            accuracy >= config.min_accuracy,
            accuracy,
            config.min_accuracy,
            f"accuracy {accuracy:.3f} {'>=' if accuracy >= config.min_accuracy else '<'} "
            f"{config.min_accuracy:.3f}",
        )
    )
    if config.no_regression:
        tests = [
            t for t in result.get("regression") or [] if t["metric"] in config.regression_metrics
        ]
        worse = [t for t in tests if t["worse"]]
        if not tests:
            reason = "no champion to compare with"
        elif worse:
            reason = "; ".join(
                f"{t['metric']} {t['candidate']:.3f} vs champion {t['champion']:.3f} "
                f"(p={t['p_value']:.3g}, {t['test']})"
                for t in worse
            )
            reason = f"significant regression: {reason}"
        else:
            champion = (result.get("champion") or {}).get("version", "?")
            compared = ", ".join(
                f"{t['metric']} {t['candidate']:.3f} vs {t['champion']:.3f} (p={t['p_value']:.3g})"
                for t in tests
            )
            reason = f"no significant regression against champion {champion}: {compared}"
        verdicts.append(Verdict("no_regression", not worse, len(worse), 0, reason))
    if config.max_fairness_gap is not None:
        gap, where = largest_gap(result.get("fairness") or {})
        ok = gap <= config.max_fairness_gap
        reason = (
            f"largest slice gap {gap:.3f} ({where}) {'<=' if ok else '>'} "
            f"{config.max_fairness_gap:.3f}"
            if where
            else "no two slices large enough to compare"
        )
        verdicts.append(Verdict("max_fairness_gap", ok, gap, config.max_fairness_gap, reason))
    if config.max_latency_ms is not None:
        latency = result["scores"].get("latency_p95_ms")
        ok = latency is not None and latency <= config.max_latency_ms
        reason = (
            "no load test ran"
            if latency is None
            else f"p95 latency {latency:.1f} ms {'<=' if ok else '>'} {config.max_latency_ms} ms"
        )
        verdicts.append(Verdict("max_latency_ms", ok, latency, config.max_latency_ms, reason))
    judge = result.get("judge")
    if judge and judge.get("min_score") is not None:
        verdicts.append(judge_verdict(judge))
    return verdicts


def judge_verdict(judge: Mapping[str, Any]) -> Verdict:
    """An untrusted judge (agreement with humans below min_kappa) decides nothing."""
    threshold = float(judge["min_score"])
    if not judge["trusted"]:
        kappa = "unmeasured" if judge["kappa"] is None else f"{judge['kappa']:.2f}"
        return Verdict(
            "judge_score",
            True,
            None,
            threshold,
            f"judge {judge['model']} not used: kappa {kappa} with humans "
            f"({judge['pairs']} pairs) < {judge['min_kappa']}",
        )
    mean = judge["mean"]
    ok = mean is not None and mean >= threshold
    return Verdict(
        "judge_score",
        ok,
        mean,
        threshold,
        f"mean judge rating {mean} {'>=' if ok else '<'} {threshold} (kappa {judge['kappa']:.2f})",
    )
