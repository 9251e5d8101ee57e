"""A minimal service built exactly like the real ones, for the bus tests.

It consumes AuditRecorded, counts what it applied in its own table, and emits an
AlertRaised caused by it. ``action == "fail"`` always raises; ``action == "crash-after-commit"``
kills the process right after the state commit, before the outbox relay can publish.
"""

from __future__ import annotations

import os

from sqlalchemy import event as sa_event
from sqlmodel import Field, SQLModel, select

from shared.bus import UnitOfWork
from shared.events import AlertRaised, AuditRecorded
from shared.runtime import Runtime, build_runtime, make_app, run_app
from shared.settings import ServiceSettings
from shared.topics import Topic


class Applied(SQLModel, table=True):
    __tablename__ = "echo_applied"

    id: int | None = Field(default=None, primary_key=True)
    event_id: str
    target: str


def register(runtime: Runtime) -> None:
    async def on_audit_recorded(event: AuditRecorded, uow: UnitOfWork) -> None:
        if event.action == "fail":
            raise RuntimeError("this handler always fails on 'fail'")
        uow.session.add(Applied(event_id=str(event.event_id), target=event.target))
        uow.emit(event.caused(AlertRaised, name="echo", summary=f"saw {event.target}"))
        if event.action == "crash-after-commit":
            # die right after the bus commits state + inbox + outbox, before the relay runs
            sa_event.listen(uow.session, "after_commit", lambda _session: os._exit(17))

    runtime.bus.subscribe(Topic.AUDIT_RECORDED, on_audit_recorded)


def applied_targets(runtime: Runtime) -> list[str]:
    from sqlmodel import Session

    assert runtime.engine is not None
    with Session(runtime.engine) as session:
        return [row.target for row in session.exec(select(Applied))]


def build(settings: ServiceSettings | None = None) -> tuple[Runtime, object]:
    settings = settings or ServiceSettings()
    runtime = build_runtime(settings, "echo")
    register(runtime)
    return runtime, make_app(runtime)


if __name__ == "__main__":
    runtime, app = build()
    run_app(app, runtime, default_port=9199)  # type: ignore[arg-type]
