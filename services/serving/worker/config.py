"""Settings of a serving worker process (`LLMOPS_WORKER_*`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings

DEFAULT_MODEL = "llmops-tiny"


class WorkerSettings(ServiceSettings):
    """`LLMOPS_WORKER_*`: one vLLM worker process."""

    model_config = SettingsConfigDict(env_prefix="LLMOPS_WORKER_", extra="ignore")

    service_name: str = "serving-worker"
    id: str | None = Field(
        None, description="Instance id; default host-pid-random. Names its promotion group."
    )
    bootstrap_model: str = Field(DEFAULT_MODEL, description="Name of the bootstrap model.")
    bootstrap_path: str | None = Field(
        None,
        description="Serve this HF model dir (or hub id) first instead of building the tiny "
        "bootstrap model under <data_dir>/serving/models/bootstrap.",
    )
    max_in_flight: int = Field(64, description="Requests generated concurrently per worker.")
    max_model_len: int = Field(512, description="Context length the engine serves.")
    dtype: str = Field("float32", description="float32 on CPUs; bfloat16/auto on GPUs.")
    enforce_eager: bool = Field(
        True,
        description="No CUDA graphs/torch.compile: the engine starts minutes sooner on CPUs. "
        "vLLM's own default is false (compiled): less CPU per token once up (the serving "
        "benchmark and the GPU compose file set false).",
    )
    kv_cache_mib: int = Field(
        256, description="KV cache per engine in MiB (ignored if VLLM_CPU_KVCACHE_SPACE set)."
    )
    engine_nice: int = Field(
        10,
        ge=0,
        le=19,
        description="CPU priority (nice) of the engine's processes (vLLM's EngineCore and "
        "workers, which spin while they decode): the Kafka hops (broker, gateway, this "
        "process) then take a core the moment they wake, instead of waiting behind a "
        "spinning engine thread (docs/serving.md); 0 leaves them as started.",
    )
    engine_compute_idle: Literal["auto", "on", "off"] = Field(
        "auto",
        description="vLLM's CPU backend: run the whole engine at SCHED_IDLE on its compute "
        "cores (its OpenMP team, and its EngineCore moved onto them), so a wake-up of the "
        "serving path never waits behind it (docs/serving.md). auto: only where the team is "
        "one core (on larger teams a preempted thread stalls the team); on; off.",
    )
    gpu_memory_utilization: float = Field(0.5, description="Share of GPU memory per engine.")
    max_loras: int = Field(
        0,
        ge=0,
        description="LoRA adapters in one batch (vLLM max_loras); 0 starts engines without "
        "LoRA support, and a promoted adapter is refused.",
    )
    max_lora_rank: int = Field(
        16, description="Largest adapter rank accepted (vLLM: 1, 8, 16, 32, 64, ... 512)."
    )
    max_cpu_loras: int = Field(
        8, description="Adapters kept loaded per engine (vLLM max_cpu_loras, >= MAX_LORAS)."
    )
    keep_previous: bool = Field(True, description="Keep the previous champion loaded (rollback).")
    heartbeat_s: float = Field(1.0, description="Seconds between heartbeats.")
    request_group: str = Field("serving-worker", description="Group sharing inference requests.")
    fetch_max_wait_ms: int = Field(
        10,
        description="Request consumer long-poll wait while requests come in (latency vs CPU: "
        "the embedded broker looks for data at halving steps of the wait, so a record "
        "waits about a quarter of it, and answers an empty fetch when the wait ends).",
    )
    idle_fetch_max_wait_ms: int = Field(
        25,
        description="Request consumer long-poll wait once no request has come or run for a "
        "second: a first request after a quiet spell may start up to this much later.",
    )
    log_linger_ms: float = Field(
        200.0,
        ge=0,
        description="How long the worker's copies of results for the durable log "
        "(inference.completed) wait to share one write, when the serving hops have a broker "
        "of their own (the embedded stack): each write is an object in the log's store. "
        "Replies never wait for it.",
    )
    stream_interval_ms: float = Field(
        20.0,
        ge=0,
        description="Least time between two frames of streamed chunks (a request's first "
        "chunk and results never wait): fewer Kafka records per token at low concurrency; "
        "20 ms is 50 updates a second, smoother than a screen shows text. The engine also "
        "gathers a request's tokens per output for as long (1-16 tokens at its recent pace); "
        "0: every token at once.",
    )
