"""Progress, agreement and per-annotator statistics of a project."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from sqlmodel import Session, select

from services.labeling import agreement
from services.labeling.adapters.store import AnnotationRow, TaskRow, task_counts
from services.labeling.schema import ProjectSpec, canonical


def project_stats(session: Session, spec: ProjectSpec) -> dict[str, Any]:
    counts = task_counts(session, spec.name)
    answers = [
        (a.task_id, a.annotator, a.label_key, a.label, a.seconds)
        for a in session.exec(select(AnnotationRow).where(AnnotationRow.project == spec.name)).all()
    ]
    finals = {
        task_id: (label, provenance)
        for task_id, label, provenance in session.exec(
            select(TaskRow.id, TaskRow.final_label, TaskRow.provenance).where(
                TaskRow.project == spec.name, TaskRow.status == "final"
            )
        ).all()
    }
    interval = spec.task == "rating"
    report = agreement.report(
        ((str(t), a, label if interval else key) for t, a, key, label, _s in answers),
        interval=interval,
    )
    per: dict[str, dict[str, Any]] = defaultdict(
        lambda: {"labels": 0, "agreed": 0, "judged": 0, "seconds": 0.0}
    )
    for task_id, annotator, key, _label, seconds in answers:
        stats = per[annotator]
        stats["labels"] += 1
        stats["seconds"] += seconds or 0.0
        if task_id in finals and finals[task_id][1] in ("human", "adjudicated"):
            stats["judged"] += 1
            stats["agreed"] += int(key == canonical(finals[task_id][0]))
    annotators = [
        {
            "annotator": name,
            "labels": s["labels"],
            "agreement_with_final": round(s["agreed"] / s["judged"], 4) if s["judged"] else None,
            "mean_seconds": round(s["seconds"] / s["labels"], 2) if s["labels"] else None,
        }
        for name, s in sorted(per.items())
    ]
    provenance = Counter(p for _l, p in finals.values())
    total = sum(counts.get(s, 0) for s in ("open", "conflict", "final"))
    return {
        "project": spec.name,
        "task": spec.task,
        "tasks": total,
        "status": {s: counts.get(s, 0) for s in ("open", "conflict", "final")},
        "progress": round(counts.get("final", 0) / total, 4) if total else 0.0,
        "provenance": dict(provenance),
        "agreement": report.as_dict(),
        "annotators": annotators,
    }
