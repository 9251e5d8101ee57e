"""The REST API (same port as the UI, /healthz and /metrics): thin routes over the service.

Routes are ``async`` and run their short database work on the event loop: answers, leases
and the bus handlers never interleave inside the process.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import ValidationError
from sqlmodel import Session, col, select

from services.labeling import projects, stats, transfer
from services.labeling.adapters.store import (
    AnnotationRow,
    ProjectCommandRow,
    ProjectRow,
    RecordRow,
    TaskRow,
)
from services.labeling.auth import COOKIE, Principal
from services.labeling.protocol import Answer, ImportBody, NewAnnotator
from services.labeling.schema import ProjectSpec, parse_spec
from services.labeling.service import prompt_and_prefill, spec_of
from shared.events import AuditRecorded, LabelingProjectRequested

router = APIRouter(prefix="/api")
TaskId = Annotated[int, Path(ge=1, le=2**31 - 1, description="Task id (a database integer).")]
"""Bounded: a larger number is a 422, not a database overflow (a 500)."""
Wait = Annotated[
    float | None,
    Query(
        ge=0,
        le=120,
        description="Seconds to wait for the command to be applied (default "
        "LLMOPS_LABELING_COMMAND_WAIT_S); then 202 with its id.",
    ),
]


async def principal(request: Request) -> Principal:
    header = request.headers.get("authorization", "")
    key = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else None
    key = key or request.headers.get("x-api-key") or request.cookies.get(COOKIE)
    found = request.app.state.keys.resolve(key)
    if found is None:
        if request.app.state.keys.too_low(key):
            raise HTTPException(403, "this needs a key of role annotator or above")
        raise HTTPException(401, "a live API key of role annotator or above is required")
    return found  # type: ignore[no-any-return]


async def admin(who: Annotated[Principal, Depends(principal)]) -> Principal:
    if not who.is_admin:
        raise HTTPException(403, "this action needs role operator or above")
    return who


Who = Annotated[Principal, Depends(principal)]
Admin = Annotated[Principal, Depends(admin)]


def task_view(session: Session, task: TaskRow) -> dict[str, Any]:
    record = session.get(RecordRow, (task.dataset, task.record_id))
    spec = spec_of(session.get(ProjectRow, task.project))  # type: ignore[arg-type]
    prompt, _prefill = prompt_and_prefill(record) if record else ("", None)
    return {
        "task_id": task.id,
        "project": task.project,
        "task": spec.task,
        "labels": spec.labels
        if spec.task != "rating"
        else [str(r) for r in range(spec.rating_min, spec.rating_max + 1)],
        "instruction": spec.instruction,
        "record_id": task.record_id,
        "dataset": task.dataset,
        "text": record.text if record else "",
        "prompt": prompt,
        "prefill": task.prefill,
        "meta": record.meta if record else {},
        "suggestion": None
        if task.suggestion is None
        else {
            "label": task.suggestion,
            "confidence": task.confidence,
            "source": task.suggestion_source,
        },
        "status": task.status,
        "answers": task.answers,
        "needed": task.needed,
        "final_label": task.final_label,
        "provenance": task.provenance,
    }


@router.get("/projects")
async def list_projects(request: Request, _who: Who) -> Any:
    with Session(request.app.state.engine) as session:
        rows = session.exec(select(ProjectRow)).all()
        return [stats.project_stats(session, spec_of(r)) for r in rows]


@router.post(
    "/projects",
    responses={
        200: {"description": "The project command was applied: project, created, tasks_added."},
        202: {"description": "Published, not applied yet: poll Location (its command id)."},
        422: {"description": "An invalid definition (checked before and when applied)."},
    },
)
async def create_project(request: Request, who: Admin, wait: Wait = None) -> Any:
    """Create or update a project: published as a signed command
    (``LabelingProjectRequested``, signed by this service for the caller) and applied by the
    service's consumer like one from the CLI."""
    raw = (await request.body()).decode("utf-8", "replace")
    try:
        spec = parse_spec(raw)
    except ValidationError as exc:
        errors = [{"loc": list(e["loc"]), "msg": e["msg"]} for e in exc.errors()]
        return JSONResponse({"detail": errors}, 422)
    except ValueError as exc:
        return JSONResponse({"detail": str(exc)}, 422)
    with request.app.state.bus.unit_of_work() as uow:
        command = uow.emit(
            LabelingProjectRequested(
                project=spec.name, spec=spec.model_dump(mode="json"), requested_by=who.name
            )
        )
    command_id = str(command.event_id)
    limit = request.app.state.command_wait_s if wait is None else wait
    deadline = asyncio.get_running_loop().time() + limit
    while True:
        with Session(request.app.state.engine) as session:
            row = session.get(ProjectCommandRow, command_id)
            if row is not None:
                return _command_answer(projects.outcome(row, command_id))
        if asyncio.get_running_loop().time() >= deadline:
            return JSONResponse(
                projects.outcome(None, command_id) | {"project": spec.name},
                202,
                headers={"location": f"/api/project-commands/{command_id}"},
            )
        await asyncio.sleep(0.05)


def _command_answer(body: dict[str, Any]) -> Any:
    if body["status"] == "rejected":
        return JSONResponse({"detail": body["error"], **body}, 422)
    return body


@router.get("/project-commands/{command_id}")
async def project_command(request: Request, command_id: uuid.UUID, _who: Admin) -> Any:
    """The outcome of a project command: ``pending`` (not applied yet, or unknown here),
    ``applied`` (created, tasks_added) or ``rejected`` (error; nothing changed)."""
    with Session(request.app.state.engine) as session:
        row = session.get(ProjectCommandRow, str(command_id))
        return projects.outcome(row, str(command_id))


@router.get("/projects/{project}")
async def get_project(request: Request, project: str, _w: Who) -> Any:
    with Session(request.app.state.engine) as session:
        spec = spec_of(request.app.state.labeling.project(session, project))
        return {"spec": spec.model_dump(mode="json"), **stats.project_stats(session, spec)}


@router.get("/projects/{project}/next")
async def next_task(request: Request, project: str, who: Who) -> Any:
    with request.app.state.bus.unit_of_work() as uow:
        task = request.app.state.labeling.next_task(uow, project, who.name)
        if task is None:
            return Response(status_code=204)
        return task_view(uow.session, task)


@router.post("/projects/{project}/tasks/{task_id}/answer")
async def answer(
    request: Request,
    project: str,
    task_id: TaskId,
    body: Answer,
    who: Who,
) -> Any:
    with request.app.state.bus.unit_of_work() as uow:
        return request.app.state.labeling.submit(
            uow, project, task_id, who.name, body.label, seconds=body.seconds
        )


@router.post("/projects/{project}/tasks/{task_id}/skip")
async def skip(request: Request, project: str, task_id: TaskId, who: Who) -> Any:
    with request.app.state.bus.unit_of_work() as uow:
        request.app.state.labeling.skip(uow, project, task_id, who.name)
    return {"task_id": task_id, "skipped": True}


@router.post("/projects/{project}/undo")
async def undo(request: Request, project: str, who: Who) -> Any:
    with request.app.state.bus.unit_of_work() as uow:
        return request.app.state.labeling.undo(uow, project, who.name)


@router.get("/projects/{project}/conflicts")
async def conflicts(request: Request, project: str, _w: Admin) -> Any:
    with Session(request.app.state.engine) as session:
        request.app.state.labeling.project(session, project)
        tasks = session.exec(
            select(TaskRow)
            .where(TaskRow.project == project, TaskRow.status == "conflict")
            .order_by(col(TaskRow.id))
        ).all()
        out = []
        for task in tasks:
            answers = session.exec(
                select(AnnotationRow).where(AnnotationRow.task_id == task.id)
            ).all()
            out.append(
                {
                    **task_view(session, task),
                    "votes": [{"annotator": a.annotator, "label": a.label} for a in answers],
                }
            )
        return out


@router.post("/projects/{project}/tasks/{task_id}/adjudicate")
async def adjudicate(
    request: Request, project: str, task_id: TaskId, body: Answer, who: Admin
) -> Any:
    with request.app.state.bus.unit_of_work() as uow:
        return request.app.state.labeling.adjudicate(uow, project, task_id, body.label, who.name)


@router.post("/projects/{project}/cut")
async def cut(request: Request, project: str, who: Admin) -> Any:
    with request.app.state.bus.unit_of_work() as uow:
        event = request.app.state.curator.cut_labeled(uow, project, who.name)
        return event.model_dump(mode="json")


@router.post("/annotators")
async def add_annotator(request: Request, body: NewAnnotator, who: Admin) -> Any:
    with request.app.state.bus.unit_of_work() as uow:
        key = request.app.state.keys.issue(uow.session, body.name, body.role)
        uow.emit(
            AuditRecorded(
                action="key.create",
                actor=who.name,
                allowed=True,
                target=f"labeling-annotator:{body.name}",
                details={"role": body.role},
            )
        )
    return {"name": body.name, "role": body.role, "key": key}


@router.post("/projects/{project}/import")
async def import_labels(request: Request, project: str, body: ImportBody, who: Admin) -> Any:
    with request.app.state.bus.unit_of_work() as uow:
        result = transfer.import_labels(
            uow,
            request.app.state.labeling,
            project,
            fmt=body.format,
            content=body.content,
            annotator=body.annotator,
        )
        uow.emit(
            AuditRecorded(
                action="labeling.import",
                actor=who.name,
                allowed=True,
                target=f"project:{project}",
                details=result,
            )
        )
        return result


@router.get("/projects/{project}/export")
async def export_labels(request: Request, project: str, _w: Who, format: str = "jsonl") -> Any:
    with Session(request.app.state.engine) as session:
        request.app.state.labeling.project(session, project)
        body, media = transfer.export_labels(session, project, format)
    return PlainTextResponse(body, media_type=media)


def spec_json(spec: ProjectSpec) -> dict[str, Any]:
    return spec.model_dump(mode="json")
