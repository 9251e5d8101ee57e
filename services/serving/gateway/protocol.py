"""Request models of the OpenAI API subset we serve, and OpenAI's error shape.

A top-level parameter we do not know, or know and cannot honour, is a 400 naming it (vLLM's
server ignores unknown fields; a caller asking for JSON must not get free text in silence).
Nested objects are tolerant readers.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class OpenAIModel(BaseModel):
    model_config = ConfigDict(extra="ignore")


class StrictRequest(OpenAIModel):
    """A top-level request: a parameter we do not know is one we cannot honour (-> 400)."""

    model_config = ConfigDict(extra="allow")

    def unsupported(self) -> list[str]:
        return sorted(self.model_extra or {})


class StreamOptions(OpenAIModel):
    include_usage: bool = False


class JsonSchemaFormat(OpenAIModel):
    name: str = "schema"
    schema_: dict[str, Any] = Field(default_factory=dict, alias="schema")
    strict: bool | None = None


class ResponseFormat(OpenAIModel):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None


class FunctionDef(OpenAIModel):
    name: str = Field(min_length=1, max_length=64)
    description: str | None = None
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object"})


class Tool(OpenAIModel):
    type: Literal["function"] = "function"
    function: FunctionDef


class NamedFunction(OpenAIModel):
    name: str


class NamedToolChoice(OpenAIModel):
    type: Literal["function"] = "function"
    function: NamedFunction


class SamplingFields(StrictRequest):
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
    logit_bias: dict[str, float] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None
    response_format: ResponseFormat | None = None
    # vLLM's extras, as vLLM's own server takes them
    top_k: int | None = Field(None, ge=-1)
    min_p: float = Field(0.0, ge=0.0, le=1.0)
    min_tokens: int = Field(0, ge=0)
    ignore_eos: bool = False
    repetition_penalty: float = Field(1.0, gt=0.0, le=2.0)

    def structured(self) -> dict[str, Any] | None:
        """The structured-output constraint the engine applies, if any."""
        fmt = self.response_format
        if fmt is None or fmt.type == "text":
            return None
        if fmt.type == "json_object":
            return {"json_object": True}
        if fmt.json_schema is None or not fmt.json_schema.schema_:
            raise APIError(
                400, "json_schema.schema is required.", param="response_format.json_schema"
            )
        return {"json": fmt.json_schema.schema_}

    def logprobs_count(self) -> int | None:
        return None

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
            "top_k": self.top_k,
            "min_p": self.min_p,
            "min_tokens": self.min_tokens,
            "ignore_eos": self.ignore_eos,
            "repetition_penalty": self.repetition_penalty,
            "logit_bias": self.logit_bias,
            "logprobs": self.logprobs_count(),
            "structured": self.structured(),
        }


class CompletionRequest(SamplingFields):
    prompt: str | list[str]
    logprobs: int | None = Field(None, ge=0, le=20)
    echo: bool = False
    best_of: int | None = None
    suffix: str | None = None

    def unsupported(self) -> list[str]:
        out = super().unsupported()
        out += ["echo"] if self.echo else []
        out += ["best_of"] if self.best_of not in (None, 1) else []
        out += ["suffix"] if self.suffix else []
        return out

    def logprobs_count(self) -> int | None:
        return self.logprobs


class ChatMessageIn(OpenAIModel):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None
    tool_calls: list[dict[str, Any]] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(str(p.get("text", "")) for p in self.content if p.get("type") == "text")
        if not self.content and self.tool_calls:  # an earlier tool call, as the model wrote it
            return json.dumps([c.get("function", {}) for c in self.tool_calls])
        return self.content or ""


class ChatCompletionRequest(SamplingFields):
    messages: list[ChatMessageIn] = Field(min_length=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=20)
    tools: list[Tool] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None

    def unsupported(self) -> list[str]:
        out = super().unsupported()
        if self.top_logprobs and not self.logprobs:
            raise APIError(400, "top_logprobs needs logprobs: true.", param="top_logprobs")
        return out

    def logprobs_count(self) -> int | None:
        return (self.top_logprobs or 0) if self.logprobs else None

    def forced_tools(self) -> list[Tool]:
        """The tools the answer must call (empty: answer in text)."""
        choice = self.tool_choice
        if not self.tools or choice == "none":
            return []
        if choice is None or choice == "auto":
            raise APIError(
                400,
                'tool_choice "auto" needs a tool-call parser for this model, which the '
                'platform does not have; use "required" or name a function.',
                param="tool_choice",
            )
        if choice == "required":
            return self.tools
        named = [t for t in self.tools if t.function.name == choice.function.name]
        if not named:
            raise APIError(
                400, f"No tool named {choice.function.name!r}.", param="tool_choice.function"
            )
        return named

    def structured(self) -> dict[str, Any] | None:
        tools = self.forced_tools()
        if not tools:
            return super().structured()
        if self.response_format is not None and self.response_format.type != "text":
            raise APIError(400, "Use tools or response_format, not both.", param="response_format")
        return {"json": tool_call_schema(tools)}


def tool_call_schema(tools: list[Tool]) -> dict[str, Any]:
    """One call of one of ``tools``: {"name": ..., "arguments": {...}}."""
    options = [
        {
            "type": "object",
            "properties": {
                "name": {"type": "string", "enum": [t.function.name]},
                "arguments": t.function.parameters,
            },
            "required": ["name", "arguments"],
            "additionalProperties": False,
        }
        for t in tools
    ]
    return options[0] if len(options) == 1 else {"anyOf": options}


class FeedbackRequest(OpenAIModel):
    response_id: str = Field(min_length=1, max_length=200)
    rating: int | None = Field(None, ge=-1, le=5)
    correction: str | None = Field(None, max_length=20_000)
    comment: str | None = Field(None, max_length=5_000)


class KeyCreateRequest(OpenAIModel):
    name: str = Field("key", max_length=100)
    role: str = "user"
    rpm: int | None = Field(None, ge=1)
    tpm: int | None = Field(None, ge=1)
    public_key: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9_-]{43}$",
        description="The holder's Ed25519 public key (base64url, 32 bytes): the key then also "
        "signs commands on the bus as user:<name> (docs/security.md).",
    )
    expires_in_s: int | None = Field(
        None,
        ge=0,
        le=10 * 366 * 86400,
        description="Seconds until the key expires; 0: never; none: the gateway's default "
        "(LLMOPS_GATEWAY_KEY_DEFAULT_EXPIRES_IN_S).",
    )


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


class EmbeddingRequest(StrictRequest):
    model: str
    input: str | list[str]
    encoding_format: Literal["float", "base64"] = "float"
    user: str | None = None
    dimensions: int | None = None

    def unsupported(self) -> list[str]:
        return super().unsupported() + (["dimensions"] if self.dimensions is not None else [])

    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else self.input
