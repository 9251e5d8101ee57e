"""Labels in and out: JSONL and CSV both ways, Label Studio's JSON export in.

Imported rows name a record (``record_id``, ``source_id`` or the exact ``text``), a label
and optionally an annotator; they count as that annotator's answers (consensus applies).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import Any

from sqlmodel import Session, col, select

from services.labeling.adapters.store import AnnotationRow, RecordRow, TaskRow
from services.labeling.schema import LabelError
from services.labeling.service import ConflictError, Labeling, spec_of
from shared.bus.store import UnitOfWork


def _rows(fmt: str, content: str) -> Iterator[dict[str, Any]]:
    if fmt == "jsonl":
        for number, line in enumerate(content.splitlines(), 1):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ValueError(f"line {number}: not JSON ({exc.msg})") from None
    elif fmt == "csv":
        for row in csv.DictReader(io.StringIO(content)):
            label = row.get("label", "")
            if label.startswith(("[", "{")) or label.lstrip("-").isdigit():
                row["label"] = json.loads(label)  # type: ignore[assignment]
            yield row
    elif fmt == "labelstudio":
        yield from _label_studio(json.loads(content))
    else:
        raise ValueError(f"format {fmt!r} is not one of jsonl, csv, labelstudio")


def _label_studio(tasks: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Label Studio's JSON export: tasks with ``data`` and ``annotations[].result``."""
    for task in tasks:
        data = task.get("data") or {}
        for annotation in task.get("annotations") or []:
            if annotation.get("was_cancelled"):
                continue
            choices: list[str] = []
            spans: list[dict[str, Any]] = []
            rating = None
            for result in annotation.get("result") or []:
                value = result.get("value") or {}
                if result.get("type") == "choices":
                    choices += value.get("choices") or []
                elif result.get("type") == "labels":
                    for name in value.get("labels") or []:
                        spans.append({"start": value["start"], "end": value["end"], "label": name})
                elif result.get("type") == "rating":
                    rating = value.get("rating")
            label: Any = spans or rating or (choices[0] if len(choices) == 1 else choices)
            who = annotation.get("completed_by")
            if isinstance(who, dict):
                who = who.get("email") or who.get("id")
            yield {
                "record_id": data.get("record_id"),
                "source_id": data.get("source_id"),
                "text": data.get("text"),
                "label": label,
                "annotator": f"labelstudio:{who}" if who is not None else None,
            }


def _find_task(
    session: Session, project: str, datasets: list[str], row: dict[str, Any]
) -> TaskRow | None:
    query = select(TaskRow).where(TaskRow.project == project)
    if row.get("record_id"):
        return session.exec(query.where(TaskRow.record_id == str(row["record_id"]))).first()
    records = select(RecordRow.record_id).where(col(RecordRow.dataset).in_(datasets))
    if row.get("source_id"):
        records = records.where(RecordRow.source_id == str(row["source_id"]))
    elif row.get("text"):
        records = records.where(RecordRow.text == str(row["text"]))
    else:
        return None
    rid = session.exec(records).first()
    return session.exec(query.where(TaskRow.record_id == rid)).first() if rid else None


def import_labels(
    uow: UnitOfWork, labeling: Labeling, project: str, *, fmt: str, content: str, annotator: str
) -> dict[str, Any]:
    spec = spec_of(labeling.project(uow.session, project))
    counts = {"imported": 0, "duplicates": 0, "unmatched": 0, "rejected": 0}
    errors: list[str] = []
    for number, row in enumerate(_rows(fmt, content), 1):
        task = _find_task(uow.session, project, spec.datasets, row)
        if task is None or task.id is None:
            counts["unmatched"] += 1
            continue
        try:
            result = labeling.submit(
                uow,
                project,
                task.id,
                str(row.get("annotator") or annotator),
                row.get("label"),
                imported=True,
            )
        except (LabelError, ConflictError) as exc:
            counts["rejected"] += 1
            errors.append(f"row {number}: {exc}")
            continue
        counts["duplicates" if result["duplicate"] else "imported"] += 1
    return {**counts, "errors": errors[:20]}


def export_labels(session: Session, project: str, fmt: str) -> tuple[str, str]:
    """Every answer and final label of the project as JSONL or CSV."""
    tasks = session.exec(
        select(TaskRow).where(TaskRow.project == project, TaskRow.status != "erased")
    ).all()
    rows = []
    for task in tasks:
        answers = session.exec(select(AnnotationRow).where(AnnotationRow.task_id == task.id)).all()
        rows.append(
            {
                "record_id": task.record_id,
                "dataset": task.dataset,
                "status": task.status,
                "label": task.final_label,
                "provenance": task.provenance,
                "answers": [{"annotator": a.annotator, "label": a.label} for a in answers],
            }
        )
    if fmt == "jsonl":
        return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "application/jsonl"
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["record_id", "dataset", "status", "label", "provenance", "annotator"])
        for r in rows:
            label = r["label"] if isinstance(r["label"], str) else json.dumps(r["label"])
            writer.writerow(
                [
                    r["record_id"],
                    r["dataset"],
                    r["status"],
                    "" if r["label"] is None else label,
                    r["provenance"] or "",
                    "",
                ]
            )
            for a in r["answers"]:
                value = a["label"] if isinstance(a["label"], str) else json.dumps(a["label"])
                writer.writerow(
                    [r["record_id"], r["dataset"], "answer", value, "human", a["annotator"]]
                )
        return buffer.getvalue(), "text/csv"
    raise ValueError(f"format {fmt!r} is not one of jsonl, csv")
