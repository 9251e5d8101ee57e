"""Request models of the OpenAI API subset we serve, and OpenAI's error shape.

Tolerant readers: unknown fields are accepted and ignored, as vLLM's server does.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class OpenAIModel(BaseModel):
    model_config = ConfigDict(extra="ignore")


class StreamOptions(OpenAIModel):
    include_usage: bool = False


class SamplingFields(OpenAIModel):
    model: str
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    n: int = Field(1, ge=1)
    seed: int | None = None
    stop: str | list[str] | None = None
    presence_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    frequency_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None

    def sampling(self, default_max_tokens: int) -> dict[str, Any]:
        stop = [self.stop] if isinstance(self.stop, str) else self.stop
        return {
            "max_tokens": self.max_completion_tokens or self.max_tokens or default_max_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "n": self.n,
            "seed": self.seed,
            "stop": stop or [],
            "presence_penalty": self.presence_penalty,
            "frequency_penalty": self.frequency_penalty,
        }


class CompletionRequest(SamplingFields):
    prompt: str | list[str]


class ChatMessageIn(OpenAIModel):
    role: str
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(str(p.get("text", "")) for p in self.content if p.get("type") == "text")
        return self.content or ""


class ChatCompletionRequest(SamplingFields):
    messages: list[ChatMessageIn] = Field(min_length=1)


class FeedbackRequest(OpenAIModel):
    response_id: str = Field(min_length=1, max_length=200)
    rating: int | None = Field(None, ge=-1, le=5)
    correction: str | None = Field(None, max_length=20_000)
    comment: str | None = Field(None, max_length=5_000)


class KeyCreateRequest(OpenAIModel):
    name: str = Field("key", max_length=100)
    role: str = "engineer"
    rpm: int | None = Field(None, ge=1)
    tpm: int | None = Field(None, ge=1)


class APIError(Exception):
    """Raised anywhere in a route; rendered as OpenAI's JSON error body."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type_: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_
        self.code = code
        self.param = param
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }
