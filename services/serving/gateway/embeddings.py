"""The embeddings use case: key, limits, validation, vectors in OpenAI's shape."""

from __future__ import annotations

import base64
import struct
from dataclasses import dataclass
from typing import Any

from services.serving.gateway.keys import Action
from services.serving.gateway.ports import Embedder
from services.serving.gateway.protocol import APIError, EmbeddingRequest
from services.serving.gateway.serving import Gateway

MAX_INPUTS = 256


@dataclass
class Embeddings:
    gateway: Gateway  # keys and limits are the gateway's
    embedder: Embedder

    async def create(self, authorization: str | None, body: EmbeddingRequest) -> dict[str, Any]:
        key = self.gateway.authenticate(authorization, Action.INFER)
        if body.unsupported():
            name = body.unsupported()[0]
            raise APIError(400, f"Unsupported parameter: {name}.", param=name)
        if body.model != self.embedder.name:
            raise APIError(
                404,
                f"The embeddings model `{body.model}` does not exist; "
                f"this gateway embeds with `{self.embedder.name}`.",
                param="model",
                code="model_not_found",
            )
        texts = body.texts()
        if not texts or len(texts) > MAX_INPUTS:
            raise APIError(400, f"Send 1 to {MAX_INPUTS} inputs.", param="input")
        chars = sum(len(t) for t in texts)
        if chars > self.gateway.settings.max_prompt_chars * 4:
            raise APIError(400, f"The input is {chars} characters; too long.", param="input")
        self.gateway.admit(key)
        vectors, tokens = await self.embedder.embed(texts)
        self.gateway.limiter.charge(key, tokens)
        return {
            "object": "list",
            "model": self.embedder.name,
            "data": [
                {"object": "embedding", "index": i, "embedding": _encode(v, body.encoding_format)}
                for i, v in enumerate(vectors)
            ],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }


def _encode(vector: list[float], encoding: str) -> list[float] | str:
    if encoding == "base64":  # what the openai client asks for by default: little-endian f32
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
    return vector
