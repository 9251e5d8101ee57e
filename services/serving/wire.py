"""Serving's own Kafka channels beside the platform catalogue, the only serving code both the
gateway and the workers import: worker heartbeats, the cancel channel, and how they are
created. The reply protocol (reply topics, chunk frames) lives in ``shared/wire.py``: other
services ask the models through Kafka too.

Heartbeats go to one compacted-in-spirit topic every worker and gateway share.
"""

from __future__ import annotations

import json

from shared.topics import Topic, ensure_topics
from shared.wire import create_channel

HEARTBEAT_TOPIC = Topic.WORKER_HEARTBEAT.value
# Gateways ask workers to stop a generation nobody reads any more (client gone). Every worker
# reads every cancel (no group); the one generating that request aborts it in its engine.
CANCEL_TOPIC = "llmops.inference.cancels"
CANCEL_KIND = b"llmops.inference.cancel"


def cancel_frame(request_id: str) -> bytes:
    return json.dumps({"kind": CANCEL_KIND.decode(), "request_id": request_id}).encode()


def cancelled_request(frame: bytes) -> str | None:
    """The request id of a cancel frame; None for anything else."""
    try:
        data = json.loads(frame)
    except ValueError:
        return None
    if not isinstance(data, dict) or data.get("kind") != CANCEL_KIND.decode():
        return None
    request_id = data.get("request_id")
    return request_id if isinstance(request_id, str) else None


async def ensure_serving_topics(bootstrap: str, replication_factor: int = 1) -> None:
    await ensure_topics(bootstrap, replication_factor=replication_factor)
    await create_channel(bootstrap, CANCEL_TOPIC, replication_factor)
