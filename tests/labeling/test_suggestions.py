"""The question put to the model and how its answer becomes a label and a confidence."""

from __future__ import annotations

import math

import pytest
from pydantic import ValidationError

from services.labeling.routing import route
from services.labeling.schema import ProjectSpec
from services.labeling.suggestions import confidence_of, label_of, question, read_answer
from shared.events.serving import GeneratedChoice, InferenceCompleted

pytestmark = pytest.mark.unit

BASE = {
    "name": "tickets",
    "task": "classification",
    "labels": ["billing", "shipping", "Account"],
    "instruction": "Which team?",
    "auto_threshold": 0.9,
}


def spec(**suggestions: object) -> ProjectSpec:
    return ProjectSpec.model_validate(
        {**BASE, "model_suggestions": {"enabled": True, "model": "tiny", **suggestions}}
    )


def test_the_question_constrains_the_answer_to_the_labels() -> None:
    project = spec(prompt="{instruction} ({labels}) <{text}>", max_text_chars=5, timeout_s=2.5)
    asked = question(project, "refund please", request_id="r1", reply_to="llmops.inference.x")
    assert asked.prompt == "Which team? (billing, shipping, Account) <refun>"
    assert asked.sampling["structured"] == {"choice": ["billing", "shipping", "Account"]}
    assert (asked.sampling["temperature"], asked.sampling["logprobs"]) == (0.0, 0)
    assert asked.deadline_ms == 2500
    assert (asked.model, asked.request_id, asked.reply_to) == ("tiny", "r1", "llmops.inference.x")


@pytest.mark.parametrize(
    ("options", "task", "message"),
    [
        ({"enabled": True}, "classification", "name the served model"),
        ({"enabled": True, "model": "m"}, "multilabel", "classification projects only"),
        ({"prompt": "no text here"}, "classification", "must contain {text}"),
        ({"prompt": "{text} {answer}"}, "classification", "placeholders"),
        ({"max_in_flight": 0}, "classification", "greater than or equal to 1"),
    ],
)
def test_bad_suggestion_options_are_refused(
    options: dict[str, object], task: str, message: str
) -> None:
    with pytest.raises(ValidationError, match=message.replace("{", r"\{").replace("}", r"\}")):
        ProjectSpec.model_validate({**BASE, "task": task, "model_suggestions": options})


def test_old_specs_have_suggestions_off() -> None:
    assert ProjectSpec.model_validate(BASE).model_suggestions.enabled is False


def test_the_answer_names_a_label_exactly_or_up_to_case() -> None:
    project = spec()
    assert label_of(project, "billing") == "billing"
    assert label_of(project, " account\n") == "Account"
    assert label_of(project, "refunds") is None


def test_confidence_is_the_probability_of_the_label_tokens() -> None:
    tokens = [
        {"token": "bill", "logprob": math.log(0.8)},
        {"token": "ing", "logprob": math.log(0.5)},
        {"token": "", "logprob": math.log(0.01)},  # end of sequence: not part of the label
    ]
    assert confidence_of("billing", tokens) == 0.4
    assert confidence_of("billing", None) == 0.0
    assert confidence_of("billing", []) == 0.0
    # the decoded pieces do not spell the label: every token counts (conservative)
    odd = [{"token": "", "logprob": math.log(0.5)}, {"token": "", "logprob": math.log(0.5)}]
    assert confidence_of("billing", odd) == 0.25


def reply(text: str, logprobs: list[dict[str, object]] | None) -> InferenceCompleted:
    return InferenceCompleted(
        request_id="r1",
        model="tiny",
        model_version="v3",
        text=text,
        choices=[GeneratedChoice(index=0, text=text, logprobs=logprobs)],
    )


def test_a_reply_becomes_a_suggestion_with_model_and_version() -> None:
    project = spec()
    sure = read_answer(project, reply("shipping", [{"token": "shipping", "logprob": -0.01}]))
    assert sure is not None
    assert (sure.label, sure.confidence, sure.source) == ("shipping", 0.99, "model:tiny@v3")
    assert sure.provenance == "model"
    assert route(project, sure) == "auto"
    unsure = read_answer(project, reply("billing", None))
    assert unsure is not None
    assert unsure.confidence == 0.0
    assert route(project, unsure) == "human"
    assert read_answer(project, reply("no idea", None)) is None
