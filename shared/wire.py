"""The inference reply protocol: what a worker writes to a requester's reply topic and how a
requester reads it back. Serving's gateway and workers use it, and so does any service that
asks the models through Kafka (labeling's model suggestions): services never import each other.

Each requester instance owns ``llmops.inference.replies.<id>`` (one partition: chunks of a
request stay in order); ``InferenceRequested.reply_to`` names it and a worker writes to
nothing else. On it travel ``InferenceChunks`` frames (streamed tokens, one per engine step)
and the final ``InferenceCompleted`` of each request, after its last chunk.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from shared.events import Event, decode
from shared.events.serving import CHUNKS_KIND, InferenceChunk
from shared.settings import kafka_client_options

log = logging.getLogger(__name__)

REPLY_PREFIX = "llmops.inference.replies."
REPLY_RETENTION_MS = 600_000
REPLY_ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}"  # Kafka topic characters, short
_REPLY_ID = re.compile(REPLY_ID_PATTERN)
CHUNKS_PREFIX = b'{"kind":"' + CHUNKS_KIND.encode()


def reply_topic(requester_id: str) -> str:
    return f"{REPLY_PREFIX}{requester_id}"


def is_reply_topic(name: str) -> bool:
    """Whether ``name`` is a requester's reply topic (``reply_topic()``'s shape): the only
    place a worker may write a request's chunks and result to."""
    return name.startswith(REPLY_PREFIX) and bool(
        _REPLY_ID.fullmatch(name.removeprefix(REPLY_PREFIX))
    )


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


def decode_reply(frame: bytes) -> list[InferenceChunk] | Event:
    """A reply-topic record: the chunks of a chunks frame, else the event it holds
    (``EventDecodeError`` / ``ValueError`` when it is neither)."""
    chunks = decode_chunks(frame)
    return chunks if chunks is not None else decode(frame)


async def create_channel(bootstrap: str, name: str, replication_factor: int = 1) -> None:
    """A one-partition topic with short retention (a reply topic, the cancel channel)."""
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
