"""Events of serving: inference requests, results, feedback."""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import Field

from shared.events.envelope import Event
from shared.events.registry import register


@register("llmops.inference.requested")
class InferenceRequested(Event):
    """Command: generate for a prompt (the gateway <-> worker hop; never stored)."""

    request_id: str = Field(description="Gateway request id; the partition key.")
    model: str = Field(description="Model name asked for.")
    prompt: str = Field(description="The prompt text (chat messages already templated).")
    sampling: dict[str, Any] = Field(default_factory=dict, description="Sampling parameters.")
    stream: bool = Field(False, description="Whether the caller streams tokens.")
    reply_to: str = Field(description="Topic where this gateway instance reads replies.")
    deadline_ms: int = Field(30_000, description="Give up after this many ms from occurred_at.")


@register("llmops.inference.completed")
class InferenceCompleted(Event):
    """Result and usage of one inference."""

    request_id: str = Field(description="Gateway request id.")
    model: str = Field(description="Model name.")
    model_version: str = Field(description="Version that answered.")
    text: str = Field("", description="Generated text (anonymized before it is stored).")
    finish_reason: str | None = Field(None, description="stop, length, error...")
    prompt_tokens: int = Field(0, description="Prompt tokens.")
    completion_tokens: int = Field(0, description="Generated tokens.")
    latency_ms: float = Field(0.0, description="Worker-side latency.")
    ttft_ms: float | None = Field(None, description="Time to first token.")
    error: str | None = Field(None, description="Error, if it failed.")


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
