"""The inference reply protocol: what a worker writes to a requester's reply topic and how a
requester reads it back. Serving's gateway and workers use it, and so does any service that
asks the models through Kafka (labeling's model suggestions): services never import each other.

Each requester instance owns ``llmops.inference.replies.<id>`` (one partition: chunks of a
request stay in order); ``InferenceRequested.reply_to`` names it and a worker writes to
nothing else. On it travel ``InferenceChunks`` frames (streamed tokens, one per engine step)
and the final ``InferenceCompleted`` of each request, after its last chunk.

Chunk frames are the hot path (one per engine step and requester, read by every gateway): they
are encoded and decoded with msgspec (``Chunk``, a C struct checked while it is parsed) rather
than through pydantic models; the JSON is the ``InferenceChunks`` of the event catalogue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Sequence
from typing import Any

import msgspec
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    KafkaError,
    TopicAlreadyExistsError,
    UnknownTopicOrPartitionError,
    for_code,
)

from shared.events import Event, decode
from shared.events.serving import CHUNKS_KIND, InferenceChunk
from shared.settings import kafka_client_options
from shared.topics import REPLY_PREFIX

log = logging.getLogger(__name__)

REPLY_RETENTION_MS = 600_000
REPLY_DELETE_ATTEMPTS = 3  # delete_reply_topic
REPLY_DELETE_GRACE_S = 0.25  # a waiting fetch's answer may be that late past its wait
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


class Chunk(msgspec.Struct, gc=False):
    """One request's new text after an engine step: ``InferenceChunk`` on the wire, as a
    msgspec struct (built and read per token and request, so it must cost next to nothing)."""

    request_id: str
    seq: int
    delta: str
    index: int = 0
    tokens: int = 0
    model_version: str = ""
    logprobs: list[dict[str, Any]] | None = None


class _Frame(msgspec.Struct, gc=False):
    kind: str  # first: a reader tells a frame from an event by its first bytes
    chunks: list[Chunk]


_encode = msgspec.json.Encoder().encode
_decode_frame = msgspec.json.Decoder(_Frame).decode


def encode_chunks(chunks: Sequence[Chunk | InferenceChunk]) -> bytes:
    """One frame (an ``InferenceChunks`` in JSON) for the chunks of one engine step."""
    wire = [c if isinstance(c, Chunk) else Chunk(**c.model_dump(exclude_none=True)) for c in chunks]
    return _encode(_Frame(CHUNKS_KIND, wire))


def coalesce(chunks: Sequence[Chunk]) -> list[Chunk]:
    """The chunks of several engine steps as one chunk per request and choice: text joined,
    tokens summed, logprobs appended, the first one's ``seq``; requests in the order they
    first appear. What a reader streams is the same text in fewer, larger pieces (one
    server-sent event instead of one per token), as vLLM's ``--stream-interval`` does."""
    merged: dict[tuple[str, int], Chunk] = {}
    for chunk in chunks:
        key = (chunk.request_id, chunk.index)
        first = merged.get(key)
        if first is None:
            merged[key] = chunk
        elif (first.logprobs is None) != (chunk.logprobs is None) or (
            first.model_version != chunk.model_version
        ):
            return list(chunks)  # never the case for one generation; keep them as they are
        else:
            logprobs = first.logprobs
            if logprobs is not None and chunk.logprobs is not None:
                logprobs = [*logprobs, *chunk.logprobs]
            merged[key] = Chunk(
                request_id=first.request_id,
                seq=first.seq,
                delta=first.delta + chunk.delta,
                index=first.index,
                tokens=first.tokens + chunk.tokens,
                model_version=first.model_version,
                logprobs=logprobs,
            )
    return list(merged.values())


def decode_chunks(frame: bytes) -> list[Chunk] | None:
    """The chunks of a frame, None if it is not one; ValueError (msgspec's) if it is a broken
    one: types are checked while parsing, no pydantic model per chunk (the hot path)."""
    if not frame.startswith(CHUNKS_PREFIX):
        return None
    return _decode_frame(frame).chunks


def decode_reply(frame: bytes) -> list[Chunk] | Event:
    """A reply-topic record: the chunks of a chunks frame, else the event it holds
    (``EventDecodeError`` / ``ValueError`` when it is neither)."""
    chunks = decode_chunks(frame)
    return chunks if chunks is not None else decode(frame)


async def create_channel(bootstrap: str, name: str, replication_factor: int = 1) -> None:
    """A one-partition topic with short retention (a reply topic, the cancel channel), on
    ``bootstrap``: the serving hops' (``shared.topics.bootstrap_for(name, settings)``)."""
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


async def delete_reply_topic(bootstrap: str, name: str, *, fetch_wait_s: float = 0.0) -> None:
    """Delete a reply topic whose reader has stopped. The embedded broker (tansu) answers a
    fetch that was still waiting on the topic when it was deleted by creating the topic again,
    so the topic is looked up once such a fetch has had time to end (``fetch_wait_s``: the
    reader's longest fetch wait) and deleted again while it is back."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap,
        request_timeout_ms=5_000,
        **kafka_client_options(),  # type: ignore[arg-type]
    )
    try:
        await admin.start()
        for _ in range(REPLY_DELETE_ATTEMPTS):
            response = (await admin.delete_topics([name])).to_object()
            for result in response["topic_error_codes"]:
                if result["error_code"] not in (0, UnknownTopicOrPartitionError.errno):
                    error = for_code(result["error_code"]).__name__
                    log.warning("reply topic not deleted", extra={"topic": name, "error": error})
                    return
            await asyncio.sleep(fetch_wait_s + REPLY_DELETE_GRACE_S)
            if name not in set(await admin.list_topics()):
                return
        log.warning("reply topic came back after each delete", extra={"topic": name})
    except KafkaError as exc:  # the broker may be gone already; retention cleans up
        log.warning("reply topic not deleted", extra={"topic": name, "error": repr(exc)})
    finally:
        await admin.close()
