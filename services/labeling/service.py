"""The labeling workflow: projects, tasks, leases, answers, consensus, adjudication.

Every method runs inside one unit of work (a session whose emitted events commit with the
state change), called from a bus handler or an HTTP route. Lease hand-out is serialized in
the process (a lock) and on PostgreSQL also by row locks, so two annotators never both hold
a task that needs only one more answer.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import Session, col, delete, select

from services.labeling import agreement
from services.labeling.adapters.store import (
    AnnotationRow,
    LeaseRow,
    ProjectRow,
    RecordRow,
    SkipRow,
    TaskRow,
    now,
)
from services.labeling.routing import Suggestion, priority, route, rule_suggestion
from services.labeling.schema import LabelError, ProjectSpec, canonical, validate_label
from shared.bus.store import UnitOfWork
from shared.events import AuditRecorded, RecordsLabeled
from shared.events.labeling import LabeledRecord


class NotFoundError(LookupError):
    """A project or task that does not exist (HTTP 404)."""


class ConflictError(RuntimeError):
    """A request that contradicts the state (HTTP 409)."""


def spec_of(row: ProjectRow) -> ProjectSpec:
    return ProjectSpec.model_validate(row.spec)


def prompt_and_prefill(record: RecordRow) -> tuple[str, str | None]:
    """What the annotator reads, and a pre-filled answer (the model's, for feedback)."""
    prompt = record.meta.get("prompt")
    if isinstance(prompt, str) and prompt:
        return prompt, record.text  # an inference record: the text is the model's answer
    if record.dataset == "feedback" or record.record_id.startswith("feedback:"):
        return str(record.meta.get("comment") or ""), record.text or None
    return record.text, None


class Labeling:
    def __init__(
        self,
        *,
        lease_s: float = 300.0,
        on_final: Callable[[UnitOfWork, ProjectRow], None] | None = None,
        clock: Callable[[], datetime] = now,
    ) -> None:
        self.lease = timedelta(seconds=lease_s)
        self.on_final = on_final  # the curator cuts a version every N final labels
        self.clock = clock
        self._lock = threading.Lock()

    # -- projects --------------------------------------------------------------------
    def project(self, session: Session, name: str) -> ProjectRow:
        row = session.get(ProjectRow, name)
        if row is None:
            raise NotFoundError(f"no project {name!r}")
        return row

    def save_project(
        self, uow: UnitOfWork, spec: ProjectSpec, actor: str, *, command_id: str | None = None
    ) -> dict[str, Any]:
        """Create or update a project (only through its signed command: projects.py)."""
        session = uow.session
        row = session.get(ProjectRow, spec.name)
        created = row is None
        if row is None:
            row = ProjectRow(name=spec.name, spec=spec.model_dump(mode="json"))
        else:
            row.spec = spec.model_dump(mode="json")
        session.add(row)
        session.flush()
        records = session.exec(
            select(RecordRow).where(
                col(RecordRow.dataset).in_(spec.datasets), col(RecordRow.erased).is_(False)
            )
        ).all()
        tasks = sum(self._add_task(uow, row, spec, r) for r in records)
        uow.emit(
            AuditRecorded(
                action="labeling.project.create" if created else "labeling.project.update",
                actor=actor,
                allowed=True,
                target=f"project:{spec.name}",
                details={
                    "task": spec.task,
                    "datasets": spec.datasets,
                    "tasks_added": tasks,
                    "command_id": command_id,
                },
            )
        )
        return {"project": spec.name, "created": created, "tasks_added": tasks}

    # -- tasks from records ---------------------------------------------------------------
    def add_record(self, uow: UnitOfWork, record: RecordRow) -> int:
        """Tasks for every project watching the record's dataset; returns how many."""
        added = 0
        for row in uow.session.exec(select(ProjectRow)).all():
            spec = spec_of(row)
            if record.dataset in spec.datasets:
                added += self._add_task(uow, row, spec, record)
        return added

    def _add_task(self, uow: UnitOfWork, row: ProjectRow, spec: ProjectSpec, rec: RecordRow) -> int:
        session = uow.session
        existing = session.exec(
            select(TaskRow.id).where(
                TaskRow.project == spec.name,
                TaskRow.dataset == rec.dataset,
                TaskRow.record_id == rec.record_id,
            )
        ).first()
        if existing is not None:
            return 0
        _prompt, prefill = prompt_and_prefill(rec)
        suggestion = rule_suggestion(spec, rec.text)
        task = TaskRow(
            project=spec.name,
            dataset=rec.dataset,
            record_id=rec.record_id,
            needed=spec.overlap,
            prefill=prefill,
            priority=priority(suggestion),
        )
        if suggestion is not None:
            task.suggestion = suggestion.label
            task.confidence = suggestion.confidence
            task.suggestion_source = suggestion.source
        session.add(task)
        session.flush()
        if route(spec, suggestion) == "auto":
            assert suggestion is not None
            self._finalize(uow, row, task, suggestion.label, _provenance(suggestion))
        return 1

    def set_suggestion(self, uow: UnitOfWork, task: TaskRow, suggestion: Suggestion) -> str:
        """A (model) suggestion for an open task: auto label or re-queue by confidence."""
        if task.status != "open" or task.answers:
            return "ignored"
        row = self.project(uow.session, task.project)
        task.suggestion, task.confidence = suggestion.label, suggestion.confidence
        task.suggestion_source, task.priority = suggestion.source, priority(suggestion)
        uow.session.add(task)
        if route(spec_of(row), suggestion) == "auto":
            self._finalize(uow, row, task, suggestion.label, _provenance(suggestion))
            return "auto"
        return "human"

    # -- the queue ----------------------------------------------------------------------
    def next_task(self, uow: UnitOfWork, project: str, annotator: str) -> TaskRow | None:
        """The annotator's leased task, or a new lease on the most uncertain open task."""
        session = uow.session
        self.project(session, project)
        moment = self.clock()
        with self._lock:
            held = session.exec(
                select(TaskRow)
                .join(LeaseRow, col(LeaseRow.task_id) == col(TaskRow.id))
                .where(
                    TaskRow.project == project,
                    TaskRow.status == "open",
                    LeaseRow.annotator == annotator,
                    LeaseRow.expires_at > moment,
                )
            ).first()
            if held is not None:
                return held
            done = select(AnnotationRow.task_id).where(AnnotationRow.annotator == annotator)
            skipped = select(SkipRow.task_id).where(SkipRow.annotator == annotator)
            candidates = session.exec(
                select(TaskRow.id)
                .where(
                    TaskRow.project == project,
                    TaskRow.status == "open",
                    col(TaskRow.id).not_in(done),
                    col(TaskRow.id).not_in(skipped),
                )
                .order_by(col(TaskRow.priority), col(TaskRow.id))
                .limit(200)
            ).all()
            for task_id in candidates:
                assert task_id is not None
                task = session.get(TaskRow, task_id, with_for_update=True)
                if task is None or task.status != "open":
                    continue
                if task.answers + self._active_leases(session, task_id, annotator, moment) >= (
                    task.needed
                ):
                    continue
                lease = session.get(LeaseRow, (task_id, annotator))
                lease = lease or LeaseRow(task_id=task_id, annotator=annotator, expires_at=moment)
                lease.expires_at = moment + self.lease
                session.add(lease)
                session.flush()
                return task
        return None

    @staticmethod
    def _active_leases(session: Session, task_id: int, other_than: str, moment: datetime) -> int:
        return len(
            session.exec(
                select(LeaseRow.annotator).where(
                    LeaseRow.task_id == task_id,
                    LeaseRow.annotator != other_than,
                    LeaseRow.expires_at > moment,
                )
            ).all()
        )

    def task(self, session: Session, project: str, task_id: int) -> TaskRow:
        task = session.get(TaskRow, task_id)
        if task is None or task.project != project or task.status == "erased":
            raise NotFoundError(f"no task {task_id} in project {project!r}")
        return task

    def submit(
        self,
        uow: UnitOfWork,
        project: str,
        task_id: int,
        annotator: str,
        value: Any,
        *,
        seconds: float | None = None,
        imported: bool = False,
    ) -> dict[str, Any]:
        """Record an answer once (a repeated submit returns the first); may finalize.

        ``imported`` answers (from a file) skip the lease check.
        """
        session = uow.session
        row = self.project(session, project)
        spec = spec_of(row)
        with self._lock:
            task = session.get(TaskRow, task_id, with_for_update=True)
            if task is None or task.project != project or task.status == "erased":
                raise NotFoundError(f"no task {task_id} in project {project!r}")
            record = session.get(RecordRow, (task.dataset, task.record_id))
            label = validate_label(spec, value, record.text if record else "")
            mine = session.exec(
                select(AnnotationRow).where(
                    AnnotationRow.task_id == task_id, AnnotationRow.annotator == annotator
                )
            ).first()
            if mine is not None:
                return {
                    "task_id": task_id,
                    "label": mine.label,
                    "duplicate": True,
                    "status": task.status,
                }
            if task.status != "open":
                raise ConflictError(f"task {task_id} is {task.status}: no more answers needed")
            moment = self.clock()
            others = 0 if imported else self._active_leases(session, task_id, annotator, moment)
            if task.answers + others >= task.needed:
                raise ConflictError(f"task {task_id} is leased to other annotators")
            session.add(
                AnnotationRow(
                    task_id=task_id,
                    project=project,
                    annotator=annotator,
                    label=label,
                    label_key=canonical(label),
                    seconds=seconds,
                )
            )
            session.exec(
                delete(LeaseRow).where(
                    col(LeaseRow.task_id) == task_id, col(LeaseRow.annotator) == annotator
                )
            )
            task.answers += 1
            session.add(task)
            session.flush()
            if task.answers >= task.needed:
                self._consensus(uow, row, task)
        return {"task_id": task_id, "label": label, "duplicate": False, "status": task.status}

    def skip(self, uow: UnitOfWork, project: str, task_id: int, annotator: str) -> None:
        session = uow.session
        self.task(session, project, task_id)
        if session.get(SkipRow, (task_id, annotator)) is None:
            session.add(SkipRow(task_id=task_id, annotator=annotator))
        session.exec(
            delete(LeaseRow).where(
                col(LeaseRow.task_id) == task_id, col(LeaseRow.annotator) == annotator
            )
        )

    def undo(self, uow: UnitOfWork, project: str, annotator: str) -> dict[str, Any]:
        """Take back the annotator's last answer while its task is still open; re-lease it."""
        session = uow.session
        with self._lock:
            last = session.exec(
                select(AnnotationRow)
                .where(AnnotationRow.project == project, AnnotationRow.annotator == annotator)
                .order_by(col(AnnotationRow.id).desc())
            ).first()
            if last is None:
                raise ConflictError("nothing to undo")
            task = session.get(TaskRow, last.task_id, with_for_update=True)
            assert task is not None
            if task.status != "open":
                raise ConflictError(f"task {task.id} is already {task.status}: ask an adjudicator")
            session.delete(last)
            task.answers -= 1
            session.add(task)
            lease = session.get(LeaseRow, (last.task_id, annotator))
            lease = lease or LeaseRow(
                task_id=last.task_id, annotator=annotator, expires_at=self.clock()
            )
            lease.expires_at = self.clock() + self.lease
            session.add(lease)
        return {"task_id": last.task_id, "undone": last.label}

    # -- consensus and adjudication -------------------------------------------------------
    def _consensus(self, uow: UnitOfWork, row: ProjectRow, task: TaskRow) -> None:
        answers = uow.session.exec(
            select(AnnotationRow).where(AnnotationRow.task_id == task.id)
        ).all()
        winner = agreement.majority([a.label_key for a in answers])
        if winner is None:
            task.status = "conflict"
            uow.session.add(task)
            return
        label = next(a.label for a in answers if a.label_key == winner)
        self._finalize(
            uow,
            row,
            task,
            label,
            "human",
            annotators=len(answers),
            share=sum(a.label_key == winner for a in answers) / len(answers),
        )

    def adjudicate(
        self, uow: UnitOfWork, project: str, task_id: int, value: Any, actor: str
    ) -> dict[str, Any]:
        session = uow.session
        row = self.project(session, project)
        task = self.task(session, project, task_id)
        record = session.get(RecordRow, (task.dataset, task.record_id))
        label = validate_label(spec_of(row), value, record.text if record else "")
        same = canonical(task.final_label) == canonical(label)
        if task.status == "final" and task.provenance == "adjudicated" and same:
            return {"task_id": task_id, "label": label, "duplicate": True}
        previous = task.final_label
        answers = session.exec(select(AnnotationRow).where(AnnotationRow.task_id == task_id)).all()
        self._finalize(uow, row, task, label, "adjudicated", annotators=len(answers))
        uow.emit(
            AuditRecorded(
                action="labeling.adjudicate",
                actor=actor,
                allowed=True,
                target=f"project:{project}/task:{task_id}",
                details={"label": label, "previous": previous, "answers": len(answers)},
            )
        )
        return {"task_id": task_id, "label": label, "duplicate": False}

    def _finalize(
        self,
        uow: UnitOfWork,
        row: ProjectRow,
        task: TaskRow,
        label: Any,
        provenance: str,
        *,
        annotators: int = 0,
        share: float | None = None,
    ) -> None:
        session = uow.session
        was_final = task.status == "final"
        task.status, task.final_label, task.provenance = "final", label, provenance
        task.finalized_at = self.clock()
        session.add(task)
        session.exec(delete(LeaseRow).where(col(LeaseRow.task_id) == task.id))
        record = session.get(RecordRow, (task.dataset, task.record_id))
        uow.emit(
            RecordsLabeled(
                dataset=task.dataset,
                project=row.name,
                count=1,
                records=[
                    LabeledRecord(
                        record_id=task.record_id,
                        text=record.text if record else "",
                        label=label,
                        annotators=annotators,
                        agreement=share,
                    )
                ],
            )
        )
        if not was_final:
            row.finals_since_cut += 1
            session.add(row)
            session.flush()
            if self.on_final is not None:
                self.on_final(uow, row)


def _provenance(suggestion: Suggestion) -> str:
    return suggestion.source if suggestion.provenance == "model" else "rule"


__all__ = ["ConflictError", "LabelError", "Labeling", "NotFoundError", "spec_of"]
