from __future__ import annotations

from pathlib import Path

import pytest

from services.training import synthetic
from services.training.domain.data import Splits, split_examples
from shared.datasets import LabeledExample
from shared.modelkit import ensure_tiny_model


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The built-in tiny Llama with a tokenizer trained on the synthetic task's texts."""
    rows = synthetic.records()
    texts = [r["prompt"] + r["completion"] for r in rows]
    return ensure_tiny_model(tmp_path_factory.mktemp("base") / "tiny", texts)


@pytest.fixture(scope="session")
def splits() -> Splits:
    examples = [LabeledExample.model_validate(r) for r in synthetic.records()]
    return split_examples(examples, "sft")
