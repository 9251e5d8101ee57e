"""Admission of a request: the API key and its role, the per-key limits, validation of what
is asked against what the platform serves and can honour."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

from opentelemetry import metrics

from services.serving.gateway.config import GatewaySettings
from services.serving.gateway.keys import Action, KeyInfo, RateLimiter, hash_key
from services.serving.gateway.ports import KeyLookup
from services.serving.gateway.protocol import APIError, SamplingFields
from services.serving.gateway.workers import WorkerDirectory

requests_counter = metrics.get_meter("llmops.gateway").create_counter(
    "llmops_gateway_requests", description="Requests by outcome."
)


class Admission:
    KEY_CACHE_S = 5.0

    def __init__(
        self,
        settings: GatewaySettings,
        keys: KeyLookup,
        directory: WorkerDirectory,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.keys = keys
        self.directory = directory
        self.limiter = RateLimiter(clock)
        self.clock = clock
        self._keys_cache: dict[str, tuple[KeyInfo | None, float]] = {}

    def authenticate(self, authorization: str | None, action: Action) -> KeyInfo:
        scheme, _, secret = (authorization or "").partition(" ")
        key = self._lookup(secret.strip()) if scheme.lower() == "bearer" else None
        now = datetime.now(UTC)
        expired = key.expires_at if key is not None and key.expired(now) else None
        if key is None and scheme.lower() == "bearer":
            expired_of = getattr(self.keys, "expired", None)
            expired = expired_of(secret.strip()) if expired_of is not None else None
        if expired is not None:
            raise APIError(
                401,
                f"API key expired at {expired.isoformat()}.",
                type_="invalid_request_error",
                code="expired_api_key",
            )
        if key is None:
            raise APIError(
                401, "Invalid API key.", type_="invalid_request_error", code="invalid_api_key"
            )
        if not key.may(action):
            raise APIError(
                403,
                f"Role {key.role} may not {action}.",
                type_="permission_error",
                code="forbidden",
            )
        return key

    def _lookup(self, secret: str) -> KeyInfo | None:
        """Keys from the store, cached a few seconds (a revocation applies within the TTL)."""
        now = self.clock()
        digest = hash_key(secret)
        cached = self._keys_cache.get(digest)
        if cached is not None and cached[1] > now:
            return cached[0]
        key = self.keys.lookup(secret)
        if len(self._keys_cache) > 10_000:
            self._keys_cache.clear()
        self._keys_cache[digest] = (key, now + self.KEY_CACHE_S)
        return key

    def forget_keys(self) -> None:
        """Drop the key cache (after a revocation made here)."""
        self._keys_cache.clear()

    def models(self) -> dict[str, set[str]]:
        return self.directory.models(time.time())  # heartbeats carry wall-clock times

    def validate(self, body: SamplingFields, prompt_chars: int) -> None:
        cfg = self.settings
        unsupported = body.unsupported()
        if unsupported:
            raise APIError(
                400,
                f"Unsupported parameter(s): {', '.join(unsupported)}. The platform cannot "
                "honour them; see the gateway's supported parameters in docs/serving.md.",
                param=unsupported[0],
                code="unsupported_parameter",
            )
        body.structured()  # tools / response_format combinations the engine cannot take
        max_tokens = body.max_completion_tokens or body.max_tokens or cfg.default_max_tokens
        if max_tokens > cfg.max_tokens_cap:
            raise APIError(
                400,
                f"max_tokens {max_tokens} is over the cap {cfg.max_tokens_cap}.",
                param="max_tokens",
                code="max_tokens_too_large",
            )
        if body.n > cfg.max_n:
            raise APIError(400, f"n {body.n} is over the cap {cfg.max_n}.", param="n")
        if prompt_chars > cfg.max_prompt_chars:
            raise APIError(
                400,
                f"The prompt is {prompt_chars} characters; the limit is {cfg.max_prompt_chars}.",
                param="prompt",
                code="context_length_exceeded",
            )
        served = self.models()
        if not served:
            raise APIError(
                503,
                "No serving worker is available; try again shortly.",
                type_="server_error",
                code="no_worker",
                headers={"Retry-After": "2"},
            )
        if body.model not in served:
            raise APIError(
                404,
                f"The model `{body.model}` does not exist.",
                param="model",
                code="model_not_found",
            )

    def admit(self, key: KeyInfo) -> None:
        refused = self.limiter.check(key)
        if refused is not None:
            which, retry_after = refused
            requests_counter.add(1, {"outcome": "rate_limited"})
            raise APIError(
                429,
                f"Rate limit reached for {which} per minute on this key.",
                type_="rate_limit_exceeded",
                code=f"rate_limit_{which}",
                headers={"Retry-After": str(retry_after)},
            )
