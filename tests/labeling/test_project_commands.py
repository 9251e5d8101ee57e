"""Project changes travel as commands (``LabelingProjectRequested``), in memory: the CLI's
path (a command on the bus), the API's (it publishes one and waits for its outcome), a
definition rejected when applied (audited, nothing changed), a copy applied once."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, select

from services.labeling.adapters.store import ProjectRow
from shared.events import AuditRecorded, LabelingProjectRequested
from shared.topics import Topic
from tests.labeling.support import ADMIN, PROJECT, TICKETS, Harness, anonymized, running

pytestmark = pytest.mark.handlers


async def outcome(h: Harness, command_id: Any) -> dict[str, Any]:
    res = await h.http.get(f"/api/project-commands/{command_id}", headers=h.as_(ADMIN))
    assert res.status_code == 200, res.text
    return res.json()  # type: ignore[no-any-return]


def project_names(h: Harness) -> set[str]:
    with Session(h.runtime.engine) as session:
        return {row.name for row in session.exec(select(ProjectRow)).all()}


async def test_a_command_on_the_bus_creates_the_project_once(data_dir: Path) -> None:
    async with running(data_dir) as h:
        await h.publish(anonymized("support", TICKETS[:3]))
        command = LabelingProjectRequested(project="tickets", spec=PROJECT, requested_by="ops")
        assert (await outcome(h, command.event_id))["status"] == "pending"
        await h.publish(command)
        done = await outcome(h, command.event_id)
        assert done["status"] == "applied"
        assert (done["created"], done["tasks_added"]) == (True, 3)
        assert done["actor"] == "ops"  # unsigned (verification off here): who it names
        audit = await h.wait(Topic.AUDIT_RECORDED, lambda e: e.action == "labeling.project.create")
        assert audit.details["command_id"] == str(command.event_id)
        await h.publish(command)  # the same command again: the inbox applies it once
        await h.settled()
        creates = [
            e for e in h.events(Topic.AUDIT_RECORDED) if e.action.startswith("labeling.project")
        ]
        assert len(creates) == 1
        assert project_names(h) == {"tickets"}


async def test_an_invalid_definition_is_rejected_when_applied_and_changes_nothing(
    data_dir: Path,
) -> None:
    async with running(data_dir) as h:
        bad = LabelingProjectRequested(
            project="broken", spec={"name": "broken", "task": "classification"}
        )
        await h.publish(bad)
        done = await outcome(h, bad.event_id)
        assert done["status"] == "rejected"
        assert "needs labels" in done["error"]
        mismatch = LabelingProjectRequested(project="other", spec=PROJECT)
        await h.publish(mismatch)
        assert "names project 'other'" in (await outcome(h, mismatch.event_id))["error"]
        assert project_names(h) == set()
        audit: AuditRecorded = await h.wait(
            Topic.AUDIT_RECORDED, lambda e: e.action == "labeling.project.rejected"
        )
        assert audit.allowed is False
        assert audit.details["command_id"] in {str(bad.event_id), str(mismatch.event_id)}


async def test_the_api_publishes_a_command_and_reports_it(data_dir: Path) -> None:
    async with running(data_dir) as h:
        res = await h.http.post("/api/projects", content=json.dumps(PROJECT), headers=h.as_(ADMIN))
        assert res.status_code == 200, res.text
        body = res.json()
        assert body["status"] == "applied"
        assert body["created"] is True
        uuid.UUID(body["command_id"])
        # wait=0: answered at once with the command id; it is applied all the same
        updated = {**PROJECT, "instruction": "Route it."}
        now = await h.http.post(
            "/api/projects?wait=0", content=json.dumps(updated), headers=h.as_(ADMIN)
        )
        assert now.status_code == 202, now.text
        command_id = now.json()["command_id"]
        assert now.headers["location"] == f"/api/project-commands/{command_id}"
        await h.settled()
        later = await outcome(h, command_id)
        assert (later["status"], later["created"]) == ("applied", False)
        spec = (await h.http.get("/api/projects/tickets", headers=h.as_(ADMIN))).json()["spec"]
        assert spec["instruction"] == "Route it."
        # who may ask about a command: operators and above, like who may issue one
        path = f"/api/project-commands/{command_id}"
        assert (await h.http.get(path)).status_code == 401
        annotator = h.as_(await h.annotator("ann"))
        assert (await h.http.get(path, headers=annotator)).status_code == 403
        bad_id = await h.http.get("/api/project-commands/not-a-uuid", headers=h.as_(ADMIN))
        assert bad_id.status_code == 422
