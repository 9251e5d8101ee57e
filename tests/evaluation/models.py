"""Real "trained" model versions for the integration test, built once and cached like
tests/serving's tiny models (services/evaluation/candidate.py does the fine-tuning)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from services.evaluation.candidate import fine_tune
from shared.modelkit import ensure_tiny_model

CACHE = Path(os.environ.get("LLMOPS_TEST_MODEL_CACHE", Path.home() / ".cache" / "llmops-tests"))


def fine_tuned(name: str, rows: Sequence[dict[str, Any]], steps: int = 40) -> Path:
    """The bootstrap model taught ``prompt -> completion`` for ``rows`` (cached by name)."""
    return fine_tune(ensure_tiny_model(CACHE / "tiny-seed0"), CACHE / f"eval-{name}", rows, steps)
