"""LLM-as-judge for free text: a rubric scored by a judge model served through the platform,
trusted only as far as it agrees with human ratings (Cohen's kappa, scikit-learn).

Calibration: the judge rates rated examples (``task == "rating"``: ``prompt``, the rated
``completion`` and the human ``label``, 1..5) and its ratings are compared with the humans'.
A judge below ``min_kappa`` is reported but used by no gate.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, Field

DEFAULT_RUBRIC = (
    "Rate the answer to the request from 1 (useless) to 5 (correct and complete).\n"
    "Request: {prompt}\nAnswer: {output}\nRating (1-5):"
)


class JudgeConfig(BaseModel):
    model: str = Field(description="Judge model name at the gateway.")
    gateway_url: str = Field("http://127.0.0.1:8000", description="OpenAI-compatible base URL.")
    rubric: str = Field(DEFAULT_RUBRIC, description="Prompt with {prompt} and {output}.")
    min_kappa: float = Field(0.4, description="Judge-human agreement needed to use the judge.")
    min_pairs: int = Field(10, description="Rated examples needed to measure agreement.")
    min_score: float | None = Field(None, description="Gate: mean judge rating at least this.")


def parse_rating(text: str) -> int | None:
    match = re.search(r"[1-5]", text)
    return int(match.group()) if match else None


def agreement(judge: Sequence[int | None], human: Sequence[Any], min_pairs: int) -> dict[str, Any]:
    """Quadratic-weighted Cohen's kappa over the pairs where both rated."""
    from sklearn.metrics import cohen_kappa_score

    pairs = [
        (int(j), int(h))
        for j, h in zip(judge, human, strict=True)
        if j is not None and isinstance(h, int | float)
    ]
    if len(pairs) < min_pairs:
        return {"kappa": None, "pairs": len(pairs)}
    js, hs = zip(*pairs, strict=True)
    if len(set(js) | set(hs)) < 2:
        return {"kappa": None, "pairs": len(pairs)}
    kappa = float(cohen_kappa_score(js, hs, weights="quadratic", labels=[1, 2, 3, 4, 5]))
    return {"kappa": kappa, "pairs": len(pairs)}
