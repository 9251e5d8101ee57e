"""Drift detectors: quiet on same-distribution windows (false-alarm rate measured and bounded),
firing on shifted ones. Fixed seeds throughout."""

from __future__ import annotations

import numpy as np
import pytest

from services.monitoring import drift
from services.monitoring.config import MonitoringSettings
from services.monitoring.service import MonitoringService, observation
from services.monitoring.traffic import inference_batch
from tests.monitoring.fakes import HashEmbedder

pytestmark = pytest.mark.unit
QUIET_WINDOWS = 100
MAX_FALSE_ALARM_RATE = 0.05


def _observations(n: int, *, drifted: bool, seed: int) -> list:
    events = inference_batch("m", "v1", n, drifted=drifted, seed=seed)
    return [observation(e.records[0], e.occurred_at, "m") for e in events]


def test_psi_is_zero_on_identical_samples_and_large_on_shifted() -> None:
    rng = np.random.default_rng(1)
    sample = rng.normal(10, 2, 500)
    assert drift.psi(sample, sample) == pytest.approx(0.0, abs=1e-9)
    assert drift.psi(sample, rng.normal(14, 2, 500)) > 1.0


def test_mmd_permutation_test_separates_shifted_embeddings() -> None:
    rng = np.random.default_rng(2)
    ref = rng.normal(0, 1, (80, 32))
    same = drift.embedding_drift(ref, rng.normal(0, 1, (80, 32)), 0.01, 200)
    moved = drift.embedding_drift(ref, rng.normal(0.4, 1, (80, 32)), 0.01, 200)
    assert not same.drifted
    assert same.p_value > 0.01
    assert moved.drifted
    assert moved.p_value < 0.01


def test_false_alarm_rate_over_quiet_windows_is_bounded() -> None:
    """Every detector on 100 same-distribution windows: how often does any of them fire?"""
    service = MonitoringService(
        MonitoringSettings(embeddings=True, mmd_permutations=100), HashEmbedder()
    )
    reference = _observations(100, drifted=False, seed=0)
    ref_vectors = service.embedder.encode([o.prompt for o in reference])
    alarms: dict[str, int] = {}
    windows_with_alarm = 0
    for seed in range(1, QUIET_WINDOWS + 1):
        results = service.compare(
            reference, _observations(100, drifted=False, seed=seed), ref_vectors
        )
        fired = [f"{r.feature}/{r.method}" for r in results if r.drifted]
        windows_with_alarm += bool(fired)
        for name in fired:
            alarms[name] = alarms.get(name, 0) + 1
    rate = windows_with_alarm / QUIET_WINDOWS
    print(f"false-alarm rate over {QUIET_WINDOWS} quiet windows: {rate:.3f}; by detector {alarms}")
    assert rate <= MAX_FALSE_ALARM_RATE


def test_every_detector_fires_on_a_drifted_window() -> None:
    service = MonitoringService(MonitoringSettings(mmd_permutations=100), HashEmbedder())
    reference = _observations(100, drifted=False, seed=0)
    results = service.compare(reference, _observations(100, drifted=True, seed=1))
    fired = {f"{r.feature}/{r.method}" for r in results if r.drifted}
    assert fired == {
        "prompt_length/psi",
        "prompt_length/ks",
        "output_length/psi",
        "output_length/ks",
        "prompt_tokens/jensen_shannon",
        "predicted_label/jensen_shannon",
        "embeddings/mmd",
    }
