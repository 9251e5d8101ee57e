"""Project changes are signed commands (``LabelingProjectRequested`` on
``llmops.labeling-project.requested.v1``): the CLI publishes them signed with the user's key,
the HTTP API signs them with this service's key for the caller it authenticated. The bus
verifies each one before this handler sees it (unsigned, forged, under-privileged: DLQ
``unauthorized``, audited, nothing changed); the inbox applies an event id once.

Applying one records its outcome (``ProjectCommandRow``) by command id: ``applied`` with what
it did, or ``rejected`` (an invalid definition: nothing changed, audited), which the API
(``GET /api/project-commands/{id}``) reports to the issuer.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from services.labeling.adapters.store import ProjectCommandRow
from services.labeling.schema import ProjectSpec
from services.labeling.service import Labeling
from shared.bus.store import UnitOfWork
from shared.events import AuditRecorded, LabelingProjectRequested

SERVICE_ROLE = "service"


def actor_of(command: LabelingProjectRequested) -> str:
    """Who the change is for: a person's own signature names them; a service (this API)
    names the caller it authenticated in ``requested_by``."""
    authority = command.authority
    if authority is None:  # LLMOPS_REQUIRE_AUTHORITY=false only
        return (command.requested_by or "unsigned")[:200]
    if authority.role == SERVICE_ROLE and command.requested_by:
        return command.requested_by[:200]
    return authority.principal[:200]


def _invalid(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'spec'}: {e['msg']}" for e in exc.errors()
        )
    return str(exc)


def apply(labeling: Labeling, uow: UnitOfWork, command: LabelingProjectRequested) -> None:
    """Apply one project command (once: the caller's inbox), recording its outcome."""
    session = uow.session
    command_id = str(command.event_id)
    if session.get(ProjectCommandRow, command_id) is not None:
        return  # its outcome is recorded: a copy under another consumer group changes nothing
    actor = actor_of(command)
    try:
        spec = ProjectSpec.model_validate(command.spec)
        if spec.name != command.project:
            raise ValueError(
                f"the command names project {command.project!r}, its spec {spec.name!r}"
            )
    except (ValidationError, ValueError) as exc:
        error = _invalid(exc)[:2000]
        session.add(
            ProjectCommandRow(
                command_id=command_id,
                project=command.project[:200],
                status="rejected",
                actor=actor,
                error=error,
            )
        )
        uow.emit(
            AuditRecorded(
                action="labeling.project.rejected",
                actor=actor,
                allowed=False,
                target=f"project:{command.project[:200]}",
                details={"command_id": command_id, "error": error[:500]},
            )
        )
        return
    result = labeling.save_project(uow, spec, actor, command_id=command_id)
    session.add(
        ProjectCommandRow(
            command_id=command_id,
            project=spec.name,
            status="applied",
            actor=actor,
            created=result["created"],
            tasks_added=result["tasks_added"],
        )
    )


def outcome(row: ProjectCommandRow | None, command_id: str) -> dict[str, Any]:
    """What the API answers about a command: pending until it has been applied."""
    if row is None:
        return {"command_id": command_id, "status": "pending"}
    body: dict[str, Any] = {
        "command_id": row.command_id,
        "project": row.project,
        "status": row.status,
        "actor": row.actor,
    }
    if row.status == "applied":
        body.update(created=row.created, tasks_added=row.tasks_added)
    else:
        body["error"] = row.error
    return body
