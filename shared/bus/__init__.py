"""Messaging: broker factory, EventBus (inbox, outbox, retry, DLQ)."""

from shared.bus.broker import make_broker
from shared.bus.eventbus import DLQ_HEADER_PREFIX, EventBus
from shared.bus.outbox import OutboxRelay
from shared.bus.store import InboxEntry, OutboxEntry, UnitOfWork

__all__ = [
    "DLQ_HEADER_PREFIX",
    "EventBus",
    "InboxEntry",
    "OutboxEntry",
    "OutboxRelay",
    "UnitOfWork",
    "make_broker",
]
