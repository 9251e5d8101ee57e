"""A Generator fake (answers by table) and a small labeled dataset version for the tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from services.evaluation.ports import Generation
from shared.datasets import cut_version
from shared.events import ClaimCheck, DatasetVersioned
from shared.modelkit import MODEL_DIR_MEDIA_TYPE
from shared.storage import ArtifactStore

LABELS = ("billing", "shipping", "refund")


def examples(n: int = 30) -> list[dict[str, Any]]:
    """Labeled test rows; regions alternate eu/us."""
    return [
        {
            "record_id": f"r{i}",
            "split": "test" if i < n else "train",
            "task": "classification",
            "prompt": f"Ticket {i}: which queue?\n",
            "completion": LABELS[i % 3],
            "label": LABELS[i % 3],
            "meta": {"region": "eu" if i % 2 == 0 else "us", "tier": "gold"},
        }
        for i in range(n + 4)
    ]


ROWS = examples()


def one_label_rows(n: int = 12, label: str = "billing") -> list[dict[str, Any]]:
    """A test split a fine-tuned tiny model learns in a few dozen steps: one answer."""
    return [
        {**row, "completion": label, "label": label}
        for row in examples(n)
        if row["split"] == "test"
    ]


ANSWER = {r["prompt"]: r["completion"] for r in ROWS}
REGION = {r["prompt"]: r["meta"]["region"] for r in ROWS}

Behaviour = Callable[[str], str]


def right(prompt: str) -> str:
    return ANSWER[prompt] + "\nmore text"


def wrong(_prompt: str) -> str:
    return "no idea"


def right_in_eu_only(prompt: str) -> str:
    return right(prompt) if REGION[prompt] == "eu" else wrong(prompt)


def right_but_few(prompt: str) -> str:
    """Right on a third of the examples."""
    return right(prompt) if int(prompt.split()[1].rstrip(":")) % 3 == 0 else wrong(prompt)


class FakeGenerator:
    def __init__(self, behaviours: dict[str, Behaviour]) -> None:
        self.behaviours = behaviours
        self.calls: list[str] = []

    def generate(
        self, model_dirs: list[str], prompts: list[str], references: list[str]
    ) -> list[Generation]:
        self.calls.append(model_dirs)
        return [
            Generation(
                [self.behaviours[d](p) for p in prompts], [1.0] * len(prompts), [5.0, 7.0], 0.1
            )
            for d in model_dirs
        ]


def model_dir(root: Path, name: str) -> tuple[str, ClaimCheck]:
    path = root / name
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text("{}")
    (path / "tokenizer.json").write_text("{}")
    return str(path), ClaimCheck(
        uri=str(path), sha256="0" * 64, size=2, media_type=MODEL_DIR_MEDIA_TYPE
    )


def rating_rows(n: int = 12) -> list[dict[str, Any]]:
    """Rated answers (labeling's rating task): the judge's calibration set."""
    return [
        {
            "record_id": f"rated{i}",
            "split": "test",
            "task": "rating",
            "prompt": f"Rate ticket answer {i}\n",
            "completion": "good answer" if i % 2 else "bad answer",
            "label": 5 if i % 2 else 1,
        }
        for i in range(n)
    ]


class FakeJudge:
    """Rates "good"/"billing" answers 5, anything else 1; or agrees with nobody."""

    def __init__(self, sensible: bool = True) -> None:
        self.sensible = sensible

    def rate(self, prompts: list[str], outputs: list[str]) -> list[int | None]:
        if not self.sensible:
            return [3] * len(outputs)
        return [5 if ("good" in o or "billing" in o) else 1 for o in outputs]


def dataset_version(
    store: ArtifactStore, dataset: str = "tickets", rows: list[dict[str, Any]] | None = None
) -> DatasetVersioned:
    manifest, claim = cut_version(
        store,
        dataset,
        rows or ROWS,
        labeled=True,
        producer="test",
        task="classification",
        splits={"test": 30, "train": 4},
    )
    return DatasetVersioned(
        dataset=dataset,
        version=manifest.version,
        records=manifest.record_count,
        manifest=claim,
        labeled=True,
    )
