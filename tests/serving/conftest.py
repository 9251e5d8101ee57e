from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.modelkit import TinyModelSpec, ensure_tiny_model
from tests.serving.stack import ServingStack

ADMIN_KEY = "sk-llmops-test-admin"


@pytest.fixture(scope="session")
def tiny_models() -> dict[str, Path]:
    """Two tiny model versions (different seeds), built once and cached across sessions."""
    cache = Path(os.environ.get("LLMOPS_TEST_MODEL_CACHE", Path.home() / ".cache" / "llmops-tests"))
    return {
        "v1": ensure_tiny_model(cache / "tiny-seed0", spec=TinyModelSpec(seed=0)),
        "v2": ensure_tiny_model(cache / "tiny-seed1", spec=TinyModelSpec(seed=1)),
    }


@pytest.fixture(scope="module")
def stack(
    kafka: str, tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServingStack]:
    """Two real workers (vLLM) and two real gateways on the session's broker."""
    root = tmp_path_factory.mktemp("serving")
    with ServingStack(kafka, root, tiny_models["v1"], ADMIN_KEY).start(workers=2, gateways=2) as s:
        yield s
