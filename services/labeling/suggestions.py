"""Model suggestions: the question put to the served model and how its answer becomes a label
with a confidence. Pure: no broker, no database.

The question is an ordinary ``InferenceRequested`` (the serving workers answer it like any
other): greedy decoding constrained to the project's labels (structured output ``choice``),
with the chosen tokens' log-probabilities. vLLM reports raw log-probabilities (before the
choice constraint masks the vocabulary), so the confidence is the model's own probability of
writing exactly that label after the prompt: ``exp(sum of the label tokens' logprobs)``.
Probability the model puts on anything else (other labels, free text) counts against it. An
answer that carries no log-probabilities (a worker that does not report them) gets confidence
0: a hint shown to annotators, never an auto label.
"""

from __future__ import annotations

import math
from typing import Any

from services.labeling.routing import Suggestion
from services.labeling.schema import ProjectSpec
from shared.events.serving import InferenceCompleted, InferenceRequested


def prompt_for(spec: ProjectSpec, text: str) -> str:
    options = spec.model_suggestions
    return options.prompt.format(
        instruction=spec.instruction,
        labels=", ".join(spec.labels),
        text=text[: options.max_text_chars],
    )


def question(spec: ProjectSpec, text: str, *, request_id: str, reply_to: str) -> InferenceRequested:
    """The inference request asking the project's model to pick one of its labels."""
    options = spec.model_suggestions
    assert options.model is not None  # the spec requires it when enabled
    return InferenceRequested(
        request_id=request_id,
        model=options.model,
        prompt=prompt_for(spec, text),
        sampling={
            "max_tokens": options.max_tokens,
            "temperature": 0.0,
            "logprobs": 0,  # the chosen token's log-probability, no alternatives
            "structured": {"choice": list(spec.labels)},
        },
        reply_to=reply_to,
        deadline_ms=int(options.timeout_s * 1000),
    )


def label_of(spec: ProjectSpec, text: str) -> str | None:
    """The project label the answer names (exactly, else ignoring case and blanks)."""
    answer = text.strip()
    if answer in spec.labels:
        return answer
    folded = {label.casefold(): label for label in spec.labels}
    return folded.get(answer.casefold())


def confidence_of(text: str, logprobs: list[dict[str, Any]] | None) -> float:
    """``exp`` of the summed log-probabilities of the tokens that spell ``text`` (trailing
    tokens such as the end-of-sequence one are not part of the label); 0 without them."""
    if not logprobs:
        return 0.0
    total, spelled = 0.0, 0
    for entry in logprobs:
        if spelled >= len(text) and spelled:
            break
        total += float(entry.get("logprob", -9999.0))
        spelled += len(str(entry.get("token") or ""))
    return round(math.exp(total), 4)


def read_answer(spec: ProjectSpec, reply: InferenceCompleted) -> Suggestion | None:
    """The suggestion a successful reply makes; None if it names no label of the project."""
    label = label_of(spec, reply.text)
    if label is None:
        return None
    first = reply.choices[0] if reply.choices else None
    confidence = confidence_of(reply.text, first.logprobs if first is not None else None)
    return Suggestion(label, confidence, f"model:{reply.model}@{reply.model_version}")
