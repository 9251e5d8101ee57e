"""Prompts longer than the evaluation engine's context are cut from the left, not fatal."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from services.evaluation.adapters.generate import fitted_prompts

pytestmark = pytest.mark.unit


class CharTokenizer:
    def __call__(self, text: str) -> SimpleNamespace:
        return SimpleNamespace(input_ids=[ord(c) for c in text])


def test_a_prompt_past_the_context_keeps_its_end() -> None:
    long = "x" * 300 + "question? answer:"
    request = {"prompts": ["short", long], "max_model_len": 256, "max_new_tokens": 32}
    short_ids, long_ids = fitted_prompts(request, CharTokenizer())
    assert short_ids == [ord(c) for c in "short"]
    assert len(long_ids) == 256 - 32
    assert "".join(map(chr, long_ids)).endswith("question? answer:")
