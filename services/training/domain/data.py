"""A labeled version's examples, split and shaped for TRL's trainers."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from services.training.domain.spec import SpecError
from shared.datasets import LabeledExample


@dataclass
class Splits:
    train: list[LabeledExample] = field(default_factory=list)
    validation: list[LabeledExample] = field(default_factory=list)
    test: list[LabeledExample] = field(default_factory=list)

    @property
    def record_ids(self) -> list[str]:
        return [e.record_id for e in self.train]

    @property
    def subject_ids(self) -> list[str]:
        """Keyed subject ids the train records carry in their metadata (for erasure)."""
        found: set[str] = set()
        for example in self.train:
            subjects = example.meta.get("subjects") or []
            found.update(str(s) for s in subjects if s)
        return sorted(found)

    def texts(self) -> list[str]:
        """Every text of the version: what a tokenizer for a built base model learns from."""
        out: list[str] = []
        for example in (*self.train, *self.validation, *self.test):
            out += [example.prompt, example.completion or "", example.chosen or ""]
            out.append(example.rejected or "")
        return [t for t in out if t]


def split_examples(
    examples: Iterable[LabeledExample], task: str, exclude: frozenset[str] = frozenset()
) -> Splits:
    """Group by split, leaving out excluded records and those unusable for ``task``."""
    splits = Splits()
    for example in examples:
        if example.record_id in exclude:
            continue
        usable = (
            example.chosen is not None and example.rejected is not None
            if task == "dpo"
            else example.completion is not None
        )
        if usable and example.split in ("train", "validation", "test"):
            getattr(splits, example.split).append(example)
    if not splits.train:
        need = "prompt/chosen/rejected" if task == "dpo" else "prompt/completion"
        raise SpecError(f"empty split: no train example with {need} for task {task}")
    return splits


def as_rows(examples: list[LabeledExample], task: str) -> list[dict[str, Any]]:
    """TRL's standard (non-conversational) formats: prompt-completion or preference."""
    if task == "dpo":
        return [{"prompt": e.prompt, "chosen": e.chosen, "rejected": e.rejected} for e in examples]
    return [{"prompt": e.prompt, "completion": e.completion} for e in examples]
