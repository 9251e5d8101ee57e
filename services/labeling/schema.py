"""Projects and their label schemas: what a valid label is, per task kind.

A project is defined in YAML or JSON (``llmops label project create FILE``). Its ``task``
fixes the label's shape; ``validate_label`` turns an annotator's answer into the canonical
form stored and compared for agreement, or raises ``LabelError`` naming what is allowed.
"""

from __future__ import annotations

import json
import re
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

TASKS = ("classification", "multilabel", "spans", "response", "rating", "preference")
NOMINAL = ("classification", "multilabel", "spans", "response", "preference")
NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")


class LabelError(ValueError):
    """A label outside the project's schema."""

    def __init__(self, message: str, allowed: list[Any] | None = None) -> None:
        super().__init__(message)
        self.allowed = allowed or []


class Rule(BaseModel):
    """Keywords or regular expressions that suggest a label."""

    model_config = ConfigDict(extra="forbid")

    label: str = Field(description="Label suggested when the rule matches.")
    keywords: list[str] = Field(default_factory=list, description="Case-insensitive words.")
    regex: str | None = Field(None, description="A Python regular expression.")
    confidence: float = Field(0.9, ge=0, le=1, description="Confidence of a match.")

    @field_validator("regex")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            re.compile(value)
        return value


DEFAULT_PROMPT = "{instruction}\nAnswer with one of: {labels}.\n\nText: {text}\nAnswer: "


class ModelSuggestions(BaseModel):
    """Ask the promoted model (through the serving workers) to suggest a label."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(False, description="Ask the model for open classification tasks.")
    model: str | None = Field(None, description="Served model name asked (its champion answers).")
    prompt: str = Field(
        DEFAULT_PROMPT,
        description="Completion prompt; placeholders {instruction}, {labels}, {text}.",
    )
    max_in_flight: int = Field(8, ge=1, le=256, description="Questions unanswered at most.")
    timeout_s: float = Field(
        60.0, gt=0, le=3600, description="After this an unanswered task stays with people."
    )
    max_text_chars: int = Field(2000, ge=1, description="Longer texts are cut for the prompt.")
    max_tokens: int = Field(32, ge=1, le=512, description="Token budget of the answer.")

    @field_validator("prompt")
    @classmethod
    def _placeholders(cls, value: str) -> str:
        try:
            rendered = value.format(instruction="", labels="", text="\x00")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(
                f"prompt: only {{instruction}}, {{labels}}, {{text}} placeholders ({exc})"
            ) from None
        if "\x00" not in rendered:
            raise ValueError("prompt: must contain {text}")
        return value


class ProjectSpec(BaseModel):
    """A labeling project as its YAML/JSON file describes it."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Project name (lowercase, digits, - _ .).")
    task: str = Field(description=f"One of {', '.join(TASKS)}.")
    labels: list[str] = Field(default_factory=list, description="Allowed labels.")
    datasets: list[str] = Field(default_factory=list, description="Datasets watched.")
    instruction: str = Field(
        "Classify the text.", description="What annotators (and the model) are asked."
    )
    overlap: int = Field(1, ge=1, le=10, description="Annotators per task.")
    rating_min: int = Field(1, description="Lowest rating (rating task).")
    rating_max: int = Field(5, description="Highest rating (rating task).")
    rules: list[Rule] = Field(default_factory=list, description="Auto-labeling rules.")
    auto_threshold: float = Field(
        0.95, ge=0, le=1.01, description="Suggestions at or above become auto labels."
    )
    cut_every: int = Field(0, ge=0, description="Cut a labeled version every N final labels.")
    split: dict[str, float] = Field(
        default_factory=lambda: {"train": 0.8, "validation": 0.1, "test": 0.1},
        description="Split fractions of labeled versions.",
    )
    seed: str = Field("llmops", description="Seed of the deterministic split.")
    model_suggestions: ModelSuggestions = Field(
        default_factory=ModelSuggestions,
        description="Model suggestions through Kafka inference (classification projects).",
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NAME.match(value):
            raise ValueError("name: lowercase letters, digits, '-', '_', '.' (max 63)")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ProjectSpec:
        if self.task not in TASKS:
            raise ValueError(f"task {self.task!r} is not one of {', '.join(TASKS)}")
        if self.task in ("classification", "multilabel", "spans") and not self.labels:
            raise ValueError(f"a {self.task} project needs labels")
        if self.task == "preference" and not self.labels:
            self.labels = ["a", "b"]
        if len(set(self.labels)) != len(self.labels):
            raise ValueError("labels must be unique")
        unknown = {r.label for r in self.rules} - set(self.labels)
        if unknown and self.task in ("classification", "multilabel"):
            raise ValueError(f"rules name unknown labels: {sorted(unknown)}")
        if (
            set(self.split) - {"train", "validation", "test"}
            or abs(sum(self.split.values()) - 1) > 1e-6
        ):
            raise ValueError("split: fractions of train, validation, test summing to 1")
        if self.rating_min >= self.rating_max:
            raise ValueError("rating_min must be below rating_max")
        if self.model_suggestions.enabled:
            if self.task != "classification":
                raise ValueError("model_suggestions: classification projects only")
            if not self.model_suggestions.model:
                raise ValueError("model_suggestions: name the served model to ask (model)")
        return self


def parse_spec(text: str) -> ProjectSpec:
    """A project from YAML or JSON text."""
    data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise ValueError("a project file is a mapping (YAML or JSON object)")
    return ProjectSpec.model_validate(data)


def _allowed(spec: ProjectSpec) -> list[Any]:
    if spec.task == "rating":
        return list(range(spec.rating_min, spec.rating_max + 1))
    return list(spec.labels)


def validate_label(spec: ProjectSpec, value: Any, text: str = "") -> Any:
    """The canonical label, or ``LabelError`` naming the allowed labels."""
    allowed = _allowed(spec)
    task = spec.task
    if task in ("classification", "preference"):
        if not isinstance(value, str) or value not in allowed:
            raise LabelError(f"label {value!r} is not one of {allowed}", allowed)
        return value
    if task == "multilabel":
        values = value if isinstance(value, list) else None
        if values is None or not values or any(v not in allowed for v in values):
            raise LabelError(f"labels {value!r}: a non-empty list of {allowed}", allowed)
        return sorted(set(values))
    if task == "rating":
        if isinstance(value, bool) or not isinstance(value, int) or value not in allowed:
            raise LabelError(f"rating {value!r} is not one of {allowed}", allowed)
        return value
    if task == "response":
        if not isinstance(value, str) or not value.strip():
            raise LabelError("a response is a non-empty string", [])
        return value.strip()
    return _spans(value, allowed, text)


def _spans(value: Any, allowed: list[Any], text: str) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise LabelError("spans: a list of {start, end, label}", allowed)
    spans = []
    for item in value:
        if not isinstance(item, dict) or item.get("label") not in allowed:
            raise LabelError(f"span label {item!r} is not one of {allowed}", allowed)
        start, end = item.get("start"), item.get("end")
        if not (isinstance(start, int) and isinstance(end, int) and 0 <= start < end <= len(text)):
            raise LabelError(f"span {item!r}: 0 <= start < end <= {len(text)}", allowed)
        spans.append({"start": start, "end": end, "label": item["label"]})
    return sorted(spans, key=lambda s: (s["start"], s["end"], s["label"]))


def canonical(label: Any) -> str:
    """A label as a comparable key (agreement, consensus)."""
    return json.dumps(label, sort_keys=True, separators=(",", ":"))
