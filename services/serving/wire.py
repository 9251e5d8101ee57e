"""The wire protocol between the gateway and the workers, the only code both import:
serving's own Kafka channels beside the platform catalogue (worker heartbeats, the
per-gateway reply topics) and how they are created.

Each gateway instance owns ``llmops.inference.replies.<gateway-id>`` (one partition: chunks of
a request stay in order), created at start and deleted at stop; ``InferenceRequested.reply_to``
names it. Heartbeats go to one compacted-in-spirit topic every worker and gateway share.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from shared.events.serving import CHUNKS_KIND, InferenceChunk
from shared.settings import kafka_client_options
from shared.topics import Topic, ensure_topics

log = logging.getLogger(__name__)

HEARTBEAT_TOPIC = Topic.WORKER_HEARTBEAT.value
REPLY_PREFIX = "llmops.inference.replies."
REPLY_RETENTION_MS = 600_000
# Gateways ask workers to stop a generation nobody reads any more (client gone). Every worker
# reads every cancel (no group); the one generating that request aborts it in its engine.
CANCEL_TOPIC = "llmops.inference.cancels"
CANCEL_KIND = b"llmops.inference.cancel"


CHUNKS_PREFIX = b'{"kind":"' + CHUNKS_KIND.encode()


def encode_chunks(chunks: list[InferenceChunk]) -> bytes:
    """One frame (an ``InferenceChunks`` in JSON) for the chunks of one engine step."""
    return json.dumps(
        {"kind": CHUNKS_KIND, "chunks": [c.__dict__ for c in chunks]},
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode()


def decode_chunks(frame: bytes) -> list[InferenceChunk] | None:
    """The chunks of a frame, None if it is not one; ValueError if it is a broken one. No
    pydantic validation per chunk (the hot path): only the shape the gateway relies on."""
    if not frame.startswith(CHUNKS_PREFIX):
        return None
    chunks = json.loads(frame).get("chunks")
    if not isinstance(chunks, list) or not all(_chunk_shaped(c) for c in chunks):
        raise ValueError("malformed chunks frame")
    return [InferenceChunk.model_construct(**c) for c in chunks]


def _chunk_shaped(chunk: object) -> bool:
    return (
        isinstance(chunk, dict)
        and isinstance(chunk.get("request_id"), str)
        and isinstance(chunk.get("delta"), str)
        and isinstance(chunk.get("seq"), int)
        and isinstance(chunk.get("index", 0), int)
        and isinstance(chunk.get("tokens", 0), int)
    )


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


def reply_topic(gateway_id: str) -> str:
    return f"{REPLY_PREFIX}{gateway_id}"


GATEWAY_ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}"  # Kafka topic characters, short
_GATEWAY_ID = re.compile(GATEWAY_ID_PATTERN)


def is_reply_topic(name: str) -> bool:
    """Whether ``name`` is a gateway's reply topic (``reply_topic()``'s shape): the only
    place a worker may write a request's chunks and result to."""
    return name.startswith(REPLY_PREFIX) and bool(
        _GATEWAY_ID.fullmatch(name.removeprefix(REPLY_PREFIX))
    )


async def ensure_serving_topics(bootstrap: str, replication_factor: int = 1) -> None:
    await ensure_topics(bootstrap, replication_factor=replication_factor)
    await create_channel(bootstrap, CANCEL_TOPIC, replication_factor)


async def create_channel(bootstrap: str, name: str, replication_factor: int = 1) -> None:
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap,
        request_timeout_ms=10_000,
        **kafka_client_options(),  # type: ignore[arg-type]
    )
    await admin.start()
    try:
        with contextlib.suppress(TopicAlreadyExistsError):
            await admin.create_topics(
                [
                    NewTopic(
                        name,
                        num_partitions=1,
                        replication_factor=replication_factor,
                        topic_configs={"retention.ms": str(REPLY_RETENTION_MS)},
                    )
                ]
            )
    finally:
        await admin.close()


async def delete_reply_topic(bootstrap: str, name: str) -> None:
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap,
        request_timeout_ms=5_000,
        **kafka_client_options(),  # type: ignore[arg-type]
    )
    try:
        await admin.start()
        await admin.delete_topics([name])
    except KafkaError as exc:  # the broker may be gone already; retention cleans up
        log.warning("reply topic not deleted", extra={"topic": name, "error": repr(exc)})
    finally:
        await admin.close()
