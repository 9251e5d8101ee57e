"""Events of serving: inference requests, results, feedback."""

from __future__ import annotations

import uuid
from typing import Any, Literal

from pydantic import Field

from shared.events.envelope import Event, Payload
from shared.events.registry import register


class ChatMessage(Payload):
    """One message of a chat conversation (the worker applies the model's chat template)."""

    role: str = Field(description="system, user or assistant.")
    content: str = Field(description="Message text.")


class GeneratedChoice(Payload):
    """One of the ``n`` generations of a request."""

    index: int = Field(description="Position among the request's n choices.")
    text: str = Field(description="Generated text (inference hop: raw until anonymized).")
    finish_reason: str | None = Field(None, description="stop, length, abort...")
    completion_tokens: int = Field(0, description="Tokens generated for this choice.")
    logprobs: list[dict[str, Any]] | None = Field(
        None,
        description="Per generated token when asked for: token, logprob, top [[token, "
        "logprob]]. Only on the gateway's reply topic (raw text), never on the catalogue.",
    )


class ServedModel(Payload):
    """A model version a worker has loaded, and its share of the traffic."""

    name: str = Field(description="Model name clients ask for.")
    version: str = Field(description="Model version.")
    alias: str = Field("champion", description="champion or challenger.")
    traffic_share: float = Field(1.0, description="Share of this model's requests it answers.")


@register("llmops.inference.requested")
class InferenceRequested(Event):
    """Command: generate for a prompt (the gateway <-> worker hop; never stored)."""

    request_id: str = Field(description="Gateway request id; the partition key.")
    model: str = Field(description="Model name asked for.")
    prompt: str = Field("", description="Prompt text of a completion request (raw).")
    messages: list[ChatMessage] | None = Field(
        None, description="Chat messages (raw); the worker applies the model's chat template."
    )
    sampling: dict[str, Any] = Field(default_factory=dict, description="Sampling parameters.")
    stream: bool = Field(False, description="Whether the caller streams tokens.")
    reply_to: str = Field(description="Topic where this gateway instance reads replies.")
    deadline_ms: int = Field(30_000, description="Give up after this many ms from occurred_at.")
    key_id: str | None = Field(None, description="Id of the API key that asked (usage, limits).")


CHUNKS_KIND = "llmops.inference.chunks"


class InferenceChunk(Payload):
    """Streamed tokens of one request (raw text: inference hop only, never stored)."""

    request_id: str = Field(description="Gateway request id.")
    seq: int = Field(description="Order of this chunk within the request, from 0.")
    index: int = Field(0, description="Which of the n choices the text belongs to.")
    delta: str = Field(description="New text since the previous chunk of this choice (raw).")
    tokens: int = Field(0, description="Tokens the delta holds.")
    model_version: str = Field("", description="Version generating.")
    logprobs: list[dict[str, Any]] | None = Field(
        None, description="Per token of the delta when asked for: token, logprob, top."
    )


class InferenceChunks(Payload):
    """The streamed chunks one worker has for one gateway after an engine step.

    A serving-internal wire message, not a catalogue event: it only travels on a gateway's own
    reply topic, beside the final InferenceCompleted. One message per engine step and gateway
    (not per token and request) keeps Kafka and the gateway light at high concurrency. ``kind``
    comes first in the JSON, so a reader tells it from an event by its first bytes.
    """

    kind: Literal["llmops.inference.chunks"] = Field(
        "llmops.inference.chunks", description="Message kind (CHUNKS_KIND)."
    )
    chunks: list[InferenceChunk] = Field(description="Chunks, in order per request.")

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()


@register("llmops.inference.completed")
class InferenceCompleted(Event):
    """Result and usage of one inference."""

    request_id: str = Field(description="Gateway request id.")
    model: str = Field(description="Model name.")
    model_version: str = Field(description="Version that answered.")
    prompt: str = Field("", description="The prompt (inference hop: raw until anonymized).")
    text: str = Field("", description="Generated text (inference hop: raw until anonymized).")
    finish_reason: str | None = Field(None, description="stop, length, error...")
    prompt_tokens: int = Field(0, description="Prompt tokens.")
    completion_tokens: int = Field(0, description="Generated tokens.")
    latency_ms: float = Field(0.0, description="Worker-side latency.")
    ttft_ms: float | None = Field(None, description="Time to first token.")
    error: str | None = Field(None, description="Error, if it failed.")
    error_type: str | None = Field(
        None, description="invalid_request, deadline_exceeded, overloaded, internal..."
    )
    choices: list[GeneratedChoice] = Field(
        default_factory=list, description="Every generation when n > 1 (text = choice 0)."
    )
    alias: str = Field("champion", description="champion or challenger: which one answered.")
    worker_id: str = Field("", description="Worker instance that answered.")
    key_id: str | None = Field(None, description="API key that asked.")


@register("llmops.worker.heartbeat")
class WorkerHeartbeat(Event):
    """A serving worker is alive: what it serves and how busy it is (every second or so)."""

    worker_id: str = Field(description="Worker instance id.")
    models: list[ServedModel] = Field(default_factory=list, description="Loaded versions.")
    in_flight: int = Field(0, description="Requests being generated now.")
    capacity: int = Field(0, description="Requests it keeps in flight at most.")
    status: str = Field("ready", description="ready, loading or stopping.")
    interval_s: float = Field(1.0, description="Seconds until the next heartbeat.")


@register("llmops.feedback.received")
class FeedbackReceived(Event):
    """A user's rating or correction of a response."""

    response_id: str = Field(description="Id of the response rated.")
    rating: int | None = Field(None, description="e.g. -1/+1 or 1..5.")
    correction: str | None = Field(None, description="A better answer, if given.")
    comment: str | None = Field(None, description="Free text.")
    key_id: str | None = Field(None, description="API key id that sent it.")
    extra: dict[str, Any] = Field(default_factory=dict, description="Other fields.")
    session: uuid.UUID | None = Field(None, description="Client session, if any.")
