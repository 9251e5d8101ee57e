"""Settings of the labeling service (env prefix ``LLMOPS_LABELING_``)."""

from __future__ import annotations

from pydantic import AliasChoices, Field
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings
from shared.wire import REPLY_ID_PATTERN

DEFAULT_PORT = 8100


class LabelingSettings(ServiceSettings):
    model_config = SettingsConfigDict(
        env_prefix="LLMOPS_LABELING_", extra="ignore", populate_by_name=True
    )

    service_name: str = "labeling"
    host: str = Field("127.0.0.1", description="Interface of the API and UI.")
    port: int = Field(
        0,
        validation_alias=AliasChoices("LLMOPS_LABELING_PORT", "port"),
        description="Port of the API, the UI, /healthz and /metrics (0: admin port, else 8100).",
    )
    lease_s: float = Field(300.0, gt=0, description="How long a handed-out task stays leased.")
    consumer_group: str = Field("labeling", description="Prefix of the consumer groups.")
    suggest_reply_id: str = Field(
        "labeling",
        pattern=rf"^{REPLY_ID_PATTERN}$",
        description="Names this process' inference reply topic (llmops.inference.replies.<id>) "
        "for model suggestions; one per labeling process.",
    )
    suggest_interval_s: float = Field(
        1.0, gt=0, description="How often open tasks are checked for model questions."
    )
    command_wait_s: float = Field(
        30.0,
        ge=0,
        le=120,
        description="How long POST /api/projects waits for its project command to be applied "
        "before answering 202 with the command id (a request's ?wait= overrides it).",
    )
    url: str = Field(
        "", description="Base URL of the service for the CLI (default http://127.0.0.1:<port>)."
    )

    def serve_port(self) -> int:
        return self.port or self.admin_port or DEFAULT_PORT

    def base_url(self) -> str:
        return self.url.rstrip("/") or f"http://127.0.0.1:{self.serve_port()}"
