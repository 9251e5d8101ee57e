"""Messaging: broker factory, EventBus (inbox, outbox, retry, DLQ)."""

from shared.bus.broker import make_broker
from shared.bus.eventbus import (
    DLQ_CLAIM_HEADER,
    DLQ_HEADER_PREFIX,
    EventBus,
    dlq_claim,
    resolve_dlq_value,
)
from shared.bus.message import Message
from shared.bus.outbox import OutboxRelay
from shared.bus.store import InboxEntry, OutboxEntry, UnitOfWork

__all__ = [
    "DLQ_CLAIM_HEADER",
    "DLQ_HEADER_PREFIX",
    "EventBus",
    "InboxEntry",
    "Message",
    "OutboxEntry",
    "OutboxRelay",
    "UnitOfWork",
    "dlq_claim",
    "make_broker",
    "resolve_dlq_value",
]
