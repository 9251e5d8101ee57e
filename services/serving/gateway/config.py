"""Settings of a gateway process (`LLMOPS_GATEWAY_*`)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings
from shared.wire import REPLY_ID_PATTERN


class GatewaySettings(ServiceSettings):
    """`LLMOPS_GATEWAY_*`: one HTTP gateway process."""

    model_config = SettingsConfigDict(env_prefix="LLMOPS_GATEWAY_", extra="ignore")

    service_name: str = "gateway"
    port: int = Field(0, description="HTTP port (API, /healthz, /metrics); 0: admin port or 8000.")
    host: str = Field("127.0.0.1", description="Interface to listen on.")
    url: str | None = Field(
        None,
        description="Base URL clients on this machine (the demo) reach the gateway at; "
        "default http://127.0.0.1:<port>.",
    )
    id: str | None = Field(
        None,
        pattern=rf"^{REPLY_ID_PATTERN}$",
        description="Instance id; names the reply topic (letters, digits, `._-`).",
    )
    max_body_bytes: int = Field(1_000_000, description="Largest request body accepted.")
    max_prompt_chars: int = Field(16_000, description="Longest prompt (all messages) accepted.")
    max_tokens_cap: int = Field(1024, description="Largest max_tokens accepted.")
    default_max_tokens: int = Field(64, description="max_tokens when the client gives none.")
    max_n: int = Field(4, description="Largest n accepted.")
    timeout_s: float = Field(60.0, description="Deadline of a request (-> 504).")
    disconnect_poll_s: float = Field(
        0.5,
        gt=0,
        description="How often a non-streamed request checks that its client is still there "
        "(gone: the generation is cancelled and charged what it used).",
    )
    worker_timeout_s: float = Field(3.5, description="A worker silent this long is gone.")
    default_rpm: int = Field(600, description="Requests per minute of a new key.")
    default_tpm: int = Field(200_000, description="Tokens per minute of a new key.")
    key_default_expires_in_s: int = Field(
        0,
        ge=0,
        description="Lifetime of a new API key when `llmops keys create` gives no "
        "--expires-in; 0: keys do not expire unless asked.",
    )
    fetch_max_wait_ms: int = Field(
        10, description="Reply consumer long-poll wait while requests await replies."
    )
    idle_fetch_max_wait_ms: int = Field(
        25,
        description="Reply consumer long-poll wait once no request has been waiting for a "
        "second (the embedded broker answers a fetch only after its wait: polling at 10 ms "
        "costs CPU even with nothing to read); a first request after a quiet spell may see "
        "its first token up to this much later.",
    )
    workers: int = Field(
        1,
        ge=1,
        le=64,
        description="Gateway processes sharing the port (each its own reply topic); more "
        "than 1 helps only where cores are free beside the engine.",
    )
    embedding_model: str = Field("all-MiniLM-L6-v2", description="Name /v1/embeddings answers to.")
    embedding_path: str | None = Field(
        None,
        description="sentence-transformers dir; default: the packaged all-MiniLM-L6-v2.",
    )

    @property
    def base_url(self) -> str:
        """Where a client reaches the gateway: ``url``, else the local port."""
        return (self.url or f"http://127.0.0.1:{self.port or 8000}").rstrip("/")
