"""Settings of the ingestion service (env prefix ``LLMOPS_INGESTION_``)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from services.ingestion.domain.cleaning import CleaningConfig
from services.ingestion.domain.dedup import DedupConfig
from services.ingestion.policy import SourcePolicy
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
        256_000,
        ge=1,
        description="Batches (transit store) and report lineages (artifact store) larger "
        "than this travel by claim check.",
    )
    max_line_bytes: int = Field(
        4 * 1024 * 1024, ge=1024, description="Longer lines (documents) are reported, skipped."
    )
    fingerprint_key: SecretStr | None = Field(
        None, description="Key of the exact-dedup fingerprints; default: a generated key file."
    )
    consumer_group: str = Field(
        CONSUMER_GROUP,
        description="Consumer group of ingest requests; erasures use <group>-erasure.",
    )
    poll_s: float = Field(1.0, gt=0, description="How often the job runner looks for work.")
    allowed_roots: Annotated[list[Path], NoDecode] = Field(
        default_factory=lambda: [Path.cwd()],
        description="Local directories sources may be read from (`:`-separated, or a JSON "
        "list); <data_dir>/inbox is always allowed, the rest of the data dir never. Default: "
        "the directory the service was started in (where `llmops up` ran).",
    )
    allowed_schemes: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="URL schemes sources may use besides local paths (comma-separated, e.g. "
        "`s3,https`). Default: none. http(s) lets requesters make the service fetch URLs.",
    )
    allow_hard_links: bool = Field(
        False,
        description="Read local files that have several hard links. Default: refused (a hard "
        "link under a root can name a file outside, e.g. the admin key).",
    )

    @field_validator("allowed_roots", mode="before")
    @classmethod
    def _split_roots(cls, value: Any) -> Any:
        if isinstance(value, str):
            if value.lstrip().startswith("["):
                return json.loads(value)
            return [part for part in value.split(os.pathsep) if part.strip()]
        return value

    @field_validator("allowed_schemes", mode="before")
    @classmethod
    def _split_schemes(cls, value: Any) -> Any:
        if isinstance(value, str):
            if value.lstrip().startswith("["):
                return json.loads(value)
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @property
    def inbox(self) -> Path:
        """Where files to ingest can always be dropped: <data_dir>/inbox."""
        return self.data_dir / "inbox"

    def source_policy(self) -> SourcePolicy:
        return SourcePolicy.of(
            self.allowed_roots,
            self.allowed_schemes,
            self.data_dir,
            self.inbox,
            allow_hard_links=self.allow_hard_links,
        )
