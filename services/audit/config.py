"""Settings of the audit service (`LLMOPS_AUDIT_*`)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings

DEFAULT_PORT = 9108


class AuditSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="LLMOPS_AUDIT_", extra="ignore")

    service_name: str = "audit"
    consumer_group: str = Field("audit", description="Consumer group of the audit trail.")
    max_page: int = Field(1000, description="Most entries one list call returns.")
