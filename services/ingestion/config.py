"""Settings of the ingestion service (env prefix ``LLMOPS_INGESTION_``)."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from services.ingestion.domain.cleaning import CleaningConfig
from services.ingestion.domain.dedup import DedupConfig
from shared.settings import ServiceSettings

DEFAULT_ADMIN_PORT = 9101
CONSUMER_GROUP = "ingestion"


class IngestionSettings(ServiceSettings):
    model_config = SettingsConfigDict(
        env_prefix="LLMOPS_INGESTION_",
        extra="ignore",
        populate_by_name=True,
        env_nested_delimiter="__",
    )

    service_name: str = "ingestion"
    cleaning: CleaningConfig = Field(
        default_factory=CleaningConfig, description="Default cleaning (requests override)."
    )
    dedup: DedupConfig = Field(
        default_factory=DedupConfig, description="Default dedup (override with `dedup` key)."
    )
    chunk_rows: int = Field(
        2000, ge=1, description="Rows processed per transaction (checkpoint granularity)."
    )
    batch_records: int = Field(500, ge=1, description="Most records per RecordsIngested.")
    claim_bytes: int = Field(
        256_000, ge=1, description="Batches larger than this travel by claim check."
    )
    max_line_bytes: int = Field(
        4 * 1024 * 1024, ge=1024, description="Longer lines (documents) are reported, skipped."
    )
    fingerprint_key: SecretStr | None = Field(
        None, description="Key of the exact-dedup fingerprints; default: a generated key file."
    )
    consumer_group: str = Field(
        CONSUMER_GROUP,
        description="Consumer group of ingest requests; erasures use <group>-erasure, "
        "anonymized records (for versions) <group>-versions.",
    )
    poll_s: float = Field(1.0, gt=0, description="How often the job runner looks for work.")
