"""One thin handler: every AuditRecorded event is appended to the chain, once."""

from __future__ import annotations

from collections.abc import Callable

from services.audit.domain import next_entry
from services.audit.ports import AuditLog
from shared.bus import EventBus, UnitOfWork
from shared.events import AuditRecorded
from shared.topics import Topic

LogFactory = Callable[[UnitOfWork], AuditLog]


def register(bus: EventBus, group: str, log_for: LogFactory) -> None:
    async def on_audit_recorded(event: AuditRecorded, uow: UnitOfWork) -> None:
        trail = log_for(uow)
        trail.append(next_entry(event, trail.last()))

    # The topic has one partition: the chain's order is the log's order.
    bus.subscribe(Topic.AUDIT_RECORDED, on_audit_recorded, group=group)
