"""Final labels as ``shared.datasets.LabeledExample`` records: every task as generation."""

from __future__ import annotations

import json
from typing import Any

from services.labeling.adapters.store import RecordRow, TaskRow
from services.labeling.schema import ProjectSpec
from services.labeling.service import prompt_and_prefill


def example(spec: ProjectSpec, task: TaskRow, record: RecordRow, split: str) -> dict[str, Any]:
    """One LabeledExample (as a dict) for a final task."""
    text, _prefill = prompt_and_prefill(record)
    label = task.final_label
    fields: dict[str, Any] = {}
    if spec.task == "classification":
        fields = _generation(spec, text, str(label), f"Labels: {', '.join(spec.labels)}.")
    elif spec.task == "multilabel":
        fields = _generation(spec, text, ", ".join(label), f"Labels: {', '.join(spec.labels)}.")
    elif spec.task == "rating":
        scale = f"Rate from {spec.rating_min} to {spec.rating_max}."
        fields = _generation(spec, text, str(label), scale)
    elif spec.task == "spans":
        found = [[record.text[s["start"] : s["end"]], s["label"]] for s in label]
        fields = _generation(spec, text, json.dumps(found, ensure_ascii=False), "")
    elif spec.task == "response":
        fields = {"prompt": text, "completion": str(label)}
    elif spec.task == "preference":
        a, b = str(record.meta.get("response_a", "")), str(record.meta.get("response_b", ""))
        chosen, rejected = (a, b) if label == "a" else (b, a)
        fields = {"prompt": text, "chosen": chosen, "rejected": rejected}
    return {
        "record_id": record.record_id,
        "source_id": record.source_id,
        "split": split,
        "task": spec.task,
        "label": label,
        "provenance": task.provenance or "human",
        "meta": {
            **{k: v for k, v in record.meta.items() if k != "prompt"},
            # keyed subject refs: training lists them in ModelTrained for erasure reports
            **({"subjects": list(record.subjects)} if record.subjects else {}),
        },
        **fields,
    }


def _generation(spec: ProjectSpec, text: str, completion: str, choices: str) -> dict[str, str]:
    head = f"{spec.instruction} {choices}".strip()
    return {"prompt": f"{head}\n\nText: {text}\nAnswer:", "completion": f" {completion}"}


def stratum(spec: ProjectSpec, task: TaskRow) -> str:
    if spec.task in ("classification", "rating", "preference"):
        return str(task.final_label)
    return spec.task
