"""Serving benchmark: our gateway (HTTP + Kafka + vLLM worker) against vLLM's own OpenAI server
and LiteLLM's proxy in front of that server (what a user would deploy instead).

The same streaming completions at concurrency 1, 8 and 32, from the same load generator, on
the same tiny model with the same engine settings (max-num-seqs, KV cache, max-model-len,
compilation), in the same run. The settings are the ones a user of each would choose: vLLM's
server started as its docs (and issue #16) start it, without `--enforce-eager` (torch.compile
on CPUs), the KV cache sized with `VLLM_CPU_KVCACHE_SPACE` (vLLM's CPU knob: its default, 92%
of the machine's memory, refuses to start beside other work); our worker configured to match
(`LLMOPS_WORKER_ENFORCE_EAGER=false`, the same `VLLM_CPU_KVCACHE_SPACE`). `--enforce-eager`
runs both eager instead, for an A/B. One target is alive at a time: each round starts a
target, measures every level, and stops it before the next target starts; rounds alternate
the order. Tokens are counted from the stream (the streamed text, re-tokenized with the
model's tokenizer), never from the server's own usage figures. LiteLLM is installed into its
own venv by this script.

Beside tokens/s and latency, each level records the CPU time the target's processes used
(every process this script started: broker, worker, engine processes, gateway; or vLLM's
server and its engine; or LiteLLM and the vLLM server behind it; not the load generator) per
1,000 streamed tokens. On a machine shared with other work that figure moves much less than
tokens/s: it is what a target costs, whoever else runs. The load generator's own CPU and the
time it waited for a core are recorded too (it must keep up: if it is starved, every target
looks alike; it measures at nice -10 where that is permitted, standing for clients on other
machines), and so is how many requests vLLM's engine was running (its /metrics,
`vllm:num_requests_running`), sampled every 250 ms: a server that receives its requests one
by one does not batch, whatever its clients send.

    .venv/bin/python benchmarks/serving.py [--quick] [--rounds N] [--no-litellm] [--enforce-eager]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from shared.modelkit import ensure_tiny_model  # noqa: E402
from tests.support.stack import (  # noqa: E402
    ServiceProcess,
    authority_env,
    embedded_log,
    free_port,
    wait_until,
)

MODEL = "llmops-tiny"
MAX_MODEL_LEN = 512
MAX_NUM_SEQS = 64
KV_CACHE_GIB = 1  # VLLM_CPU_KVCACHE_SPACE for both targets: 262k tokens of the tiny model
DURABLE_LOG = True  # the default stack: `--memory-log` runs the serving path on one memory broker
ENFORCE_EAGER = False  # vLLM's default (its server without --enforce-eager); --enforce-eager flips
STARVED = 0.5  # s per s the generator's event loop waits for a core: beyond, it is the limit
GENERATOR_NICE = -10  # the load generator's thread while it measures (where allowed)
LITELLM_SPEC = "litellm[proxy]"
PROMPT = "The platform ingests records, removes personal data and"
MAX_TOKENS = 32
KEY = "sk-llmops-bench"
MACHINE = "2-core x86_64, 24 GiB, no GPU"


@dataclass
class Sample:
    ttft: float
    latency: float
    text: str
    tokens: int = 0  # counted from ``text`` once the level is over


@dataclass
class Result:
    target: str
    concurrency: int
    samples: list[Sample]
    wall: float
    cpu: dict[str, float] = field(default_factory=dict)  # CPU s of its processes, by role
    gen_cpu: float = 0.0  # CPU s of the load generator (this process) while measured
    gen_wait: float = 0.0  # s its threads waited for a core (run queue) while measured
    running: list[float] = field(default_factory=list)  # vllm:num_requests_running samples
    gen_span: float = 0.0  # s over which gen_cpu/gen_wait were measured (0: wall)

    @property
    def cpu_s(self) -> float:  # CPU time of the target's processes while measured
        return sum(self.cpu.values())

    def cpu_breakdown(self) -> str:
        per = {role: s / max(1, self.tokens) * 1e6 for role, s in self.cpu.items()}
        return ", ".join(f"{role} {ms:,.0f}" for role, ms in sorted(per.items()))

    @property
    def tokens(self) -> int:
        return sum(s.tokens for s in self.samples)

    @property
    def cpu_per_1k(self) -> float:
        return self.cpu_s / max(1, self.tokens) * 1000

    @property
    def tokens_per_s(self) -> float:
        return sum(s.tokens for s in self.samples) / self.wall

    def generator(self) -> str:
        """The load generator's cost: CPU per 1k tokens, cores busy, run-queue wait per s."""
        span = self.gen_span or self.wall
        starved = self.gen_wait / span > STARVED
        return (
            f"load generator {self.gen_cpu / max(1, self.tokens) * 1e6:,.0f} ms CPU / 1k tokens, "
            f"{self.gen_cpu / span:.2f} cores busy, its event loop waited "
            f"{self.gen_wait / span:.2f} s/s for a core"
            + (" (STARVED: it cannot keep up, this level measures the machine)" if starved else "")
        )

    def engine_running(self) -> str:
        if not self.running:
            return ""
        mean = sum(self.running) / len(self.running)
        return f"; vLLM engine running mean {mean:.1f}, max {max(self.running):.0f}"

    def pct(self, attr: str, q: float) -> float:
        values = sorted(getattr(s, attr) for s in self.samples)
        return values[min(len(values) - 1, int(q * len(values)))] * 1000

    def row(self) -> str:
        return (
            f"| {self.target} | {self.concurrency} | {self.tokens_per_s:,.0f} | "
            f"{self.pct('latency', 0.5):.0f} | {self.pct('latency', 0.99):.0f} | "
            f"{self.pct('ttft', 0.5):.1f} | {self.pct('ttft', 0.99):.1f} | "
            f"{self.cpu_per_1k * 1000:,.0f} |"
        )


REQUEST_BODY = json.dumps(
    {
        "model": MODEL,
        "prompt": PROMPT,
        "max_tokens": MAX_TOKENS,
        "temperature": 0.0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
).encode()


class StreamClient:
    """The load generator's HTTP/1.1 client: one keep-alive connection, a streamed POST, the
    server-sent events' ``data:`` payloads as they arrive. Raw asyncio streams and nothing
    per chunk but a split and a ``json.loads``: httpx spent 3x its CPU (an SSE server of 32-chunk
    streams, 200 requests at 8: 0.19 vs 0.06 s), and on 2
    cores a generator that needs a core the target is using measures the machine, not the
    target (the STARVED flag). It speaks exactly what both targets answer: a
    ``Transfer-Encoding: chunked`` or ``Content-Length`` body of ``data: ...`` events."""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        parsed = httpx.URL(url)
        self.host, self.port = parsed.host, parsed.port or 80
        self.head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()
        self.reader = self.writer = None

    async def events(self, path: str, body: bytes) -> Any:
        """POST ``body`` to ``path``; yields each event's data (bytes) as it arrives."""
        if self.writer is None or self.writer.is_closing():
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        assert self.writer is not None
        reader = self.reader
        self.writer.write(
            (
                f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n{self.head}"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode()
            + body
        )
        status = await reader.readline()
        if not status.startswith(b"HTTP/1.1 "):
            await self.close()
            raise httpx.RemoteProtocolError(f"not an HTTP/1.1 answer: {status!r}")
        headers: dict[bytes, bytes] = {}
        while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        code = int(status.split()[1])
        chunked = headers.get(b"transfer-encoding", b"").lower() == b"chunked"
        left = int(headers.get(b"content-length", b"-1"))
        pending = b""
        while True:
            if chunked:
                size = int((await reader.readline()).split(b";")[0], 16)
                data = await reader.readexactly(size + 2)
                if size == 0:
                    break
                data = data[:-2]
            elif left >= 0:
                if left == 0:
                    break
                data = await reader.read(min(left, 65536))
                if not data:
                    break
                left -= len(data)
            else:  # no length: the body runs to the connection's end
                data = await reader.read(65536)
                if not data:
                    await self.close()
                    break
            if code >= 400:
                pending += data
                continue
            pending += data
            *complete, pending = pending.replace(b"\r\n", b"\n").split(b"\n\n")
            for event in complete:
                for line in event.split(b"\n"):
                    if line.startswith(b"data: "):
                        yield line[6:]
        if headers.get(b"connection", b"").lower() == b"close":
            await self.close()
        if code >= 400:
            raise httpx.HTTPStatusError(
                f"{code}: {pending[:300]!r}",
                request=httpx.Request("POST", path),
                response=httpx.Response(code),
            )


async def one_request(client: StreamClient) -> Sample:
    started = time.perf_counter()
    ttft = None
    text: list[str] = []
    async for data in client.events("/v1/completions", REQUEST_BODY):
        if data == b"[DONE]":
            continue
        chunk = json.loads(data)
        piece = chunk["choices"][0].get("text") if chunk.get("choices") else None
        if piece:
            text.append(piece)
            if ttft is None:
                ttft = time.perf_counter() - started
    latency = time.perf_counter() - started
    return Sample(ttft if ttft is not None else latency, latency, "".join(text))


_TOKENIZER: Any = None


def count_tokens(text: str) -> int:
    return len(_TOKENIZER.encode(text, add_special_tokens=False)) if text else 0


async def load(url: str, target: str, concurrency: int, requests: int) -> Result:
    headers = {"Authorization": f"Bearer {KEY}"}
    clients = [StreamClient(url, headers) for _ in range(concurrency)]
    async with httpx.AsyncClient(base_url=url, timeout=5) as probe:
        try:
            for _ in range(2):  # warm-up
                await one_request(clients[0])
            queue = list(range(requests))
            samples: list[Sample] = []

            async def user(client: StreamClient) -> None:
                while queue:
                    queue.pop()
                    samples.append(await asyncio.wait_for(one_request(client), 120))

            running: list[float] = []
            sampler = asyncio.create_task(_sample_running(probe, running))
            cpu, gen_cpu, gen_wait = _children_cpu(), time.process_time(), _run_queue_wait()
            started = time.perf_counter()
            await asyncio.gather(*(user(c) for c in clients))
            wall = time.perf_counter() - started
            gen_cpu, gen_wait = time.process_time() - gen_cpu, _run_queue_wait() - gen_wait
            sampler.cancel()
        finally:
            for client in clients:
                await client.close()
    for sample in samples:  # after the clock: the tokenizer is not the generator's load
        sample.tokens = count_tokens(sample.text)
    used: dict[str, float] = {}
    for (role, pid), seconds in _children_cpu().items():
        used[role] = used.get(role, 0.0) + seconds - cpu.get((role, pid), 0.0)
    return Result(target, concurrency, samples, wall, used, gen_cpu, gen_wait, running)


RUNNING = re.compile(r"^vllm:num_requests_running\{[^}]*\} ([0-9.eE+]+)$", re.M)


AUTOGROUP = Path("/proc/self/autogroup")


@contextlib.contextmanager
def generator_priority() -> Iterator[bool]:
    """The load generator at nice ``GENERATOR_NICE`` while it measures, back after; yields
    whether that was allowed (Linux, CAP_SYS_NICE). The generator stands for clients on
    other machines: a target whose engine spins every core must not starve it, or the level
    measures the machine, not the target (vLLM's server's rounds did: the generator waited
    0.97 s per s for a core and the target's engine saw no requests). With the kernel's
    autogroups (one per session; every target runs in sessions of its own) a thread's nice
    weighs only against its own session, so the session's group is raised too
    (``/proc/self/autogroup``). Every target gets the same; none is started while this
    holds, and the targets keep the priority they started with."""
    try:
        before = os.getpriority(os.PRIO_PROCESS, 0)
        os.setpriority(os.PRIO_PROCESS, 0, GENERATOR_NICE)  # this thread (Linux: per thread)
    except (OSError, AttributeError):  # not permitted, or not Linux: unchanged
        yield False
        return
    group = _autogroup_nice()
    if group is not None:
        try:
            AUTOGROUP.write_text(str(GENERATOR_NICE))
        except OSError:  # a /proc that refuses it: the thread's nice alone
            group = None
    try:
        yield True
    finally:
        if group is not None:
            AUTOGROUP.write_text(str(group))
        os.setpriority(os.PRIO_PROCESS, 0, before)


def _autogroup_nice() -> int | None:
    """This session's autogroup nice, when autogroups are on and it may be set."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        if Path("/proc/sys/kernel/sched_autogroup_enabled").read_text().strip() == "1":
            return int(AUTOGROUP.read_text().split("nice")[1])
    return None


async def _sample_running(probe: httpx.AsyncClient, into: list[float]) -> None:
    """vllm:num_requests_running from the target's /metrics every 250 ms (vLLM's server
    only; stops at once on a target without it)."""
    while True:
        await asyncio.sleep(0.25)
        try:
            found = RUNNING.search((await probe.get("/metrics")).text)
        except httpx.HTTPError:
            return
        if found is None:
            return
        into.append(float(found.group(1)))


def _run_queue_wait() -> float:
    """Seconds the calling thread (the load generator's event loop) spent runnable but
    waiting for a core (Linux schedstat; 0 elsewhere): a starved load generator shows here,
    not in its CPU time. The loop's thread only: the tokenizer's pools would blur it."""
    with contextlib.suppress(OSError, IndexError, ValueError):
        return int(Path("/proc/thread-self/schedstat").read_text().split()[1]) / 1e9
    return 0.0


ROLES = {  # first match wins: the log store's command line names its bucket, "tansu"
    "s3rver": "log-store",
    "tansu": "broker",  # both: the durable log's and the serving hops'
    "services.serving.worker": "worker",
    "services.serving.gateway": "gateway",
    "vllm.entrypoints": "vllm-server",
    "litellm": "litellm",
}


def _children_cpu() -> dict[tuple[str, int], float]:
    """CPU seconds (user + system) of every process this script started, by (role, pid):
    the broker, our worker and gateway, vLLM's server, LiteLLM, vLLM's engine processes."""
    now: dict[tuple[str, int], float] = {}
    for proc in psutil.Process().children(recursive=True):
        try:
            times, name, cmdline = proc.cpu_times(), proc.name(), " ".join(proc.cmdline())
        except psutil.Error:  # gone meanwhile
            continue
        role = next((r for key, r in ROLES.items() if key in cmdline), name)
        now[(role, proc.pid)] = times.user + times.system
    return now


def merge(runs: list[Result]) -> Result:
    """Rounds of one target and level: samples pooled, tokens/s is the median round's."""
    median = sorted(runs, key=lambda r: r.tokens_per_s)[len(runs) // 2]
    samples = [s for r in runs for s in r.samples]
    tokens = sum(s.tokens for s in samples)
    return Result(
        runs[0].target,
        runs[0].concurrency,
        samples,
        tokens / median.tokens_per_s,
        {role: sum(r.cpu.get(role, 0.0) for r in runs) for run in runs for role in run.cpu},
        sum(r.gen_cpu for r in runs),
        sum(r.gen_wait for r in runs),
        [x for r in runs for x in r.running],
        sum(r.wall for r in runs),
    )


async def in_process(model: Path, concurrency: int, requests: int, eager: bool) -> float:
    """The engine alone (no HTTP, no Kafka): tokens/s ceiling."""
    from services.serving.worker.adapters.vllm_engine import VllmLoader
    from services.serving.worker.config import WorkerSettings
    from services.serving.worker.ports import Sampling

    settings = WorkerSettings(
        max_model_len=MAX_MODEL_LEN, max_in_flight=MAX_NUM_SEQS, enforce_eager=eager
    )  # KV cache: VLLM_CPU_KVCACHE_SPACE, set by main()
    engine = await VllmLoader(settings).load(str(model))
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
def ours(work: Path, model: Path, eager: bool) -> Iterator[str]:
    """The embedded log as `llmops up` runs it (durable store + the serving hops' memory
    broker; ``--memory-log``: one memory broker) + one worker + one gateway; yields the
    gateway URL. The worker gets the engine settings vLLM's server gets
    (VLLM_CPU_KVCACHE_SPACE comes from main())."""
    with embedded_log(work / "stack", durable=DURABLE_LOG) as kafka:
        env = {
            **kafka,
            "LLMOPS_DATA_DIR": str(work / "data"),
            "LLMOPS_ADMIN_KEY": KEY,
            "LLMOPS_WORKER_BOOTSTRAP_PATH": str(model),
            "LLMOPS_WORKER_MAX_MODEL_LEN": str(MAX_MODEL_LEN),
            "LLMOPS_WORKER_MAX_IN_FLIGHT": str(MAX_NUM_SEQS),
            "LLMOPS_WORKER_ENFORCE_EAGER": str(eager).lower(),
            "LLMOPS_LOG_LEVEL": "WARNING",
        }
        env.update(authority_env(work / "data", KEY, "serving"))  # as under `llmops up`
        # torch.compile of the model on first start: minutes on a busy 2-core machine
        worker = ServiceProcess("services.serving.worker", env, work / "worker.log").start(900)
        gateway = ServiceProcess("services.serving.gateway", env, work / "gateway.log")
        try:
            gateway.start(60)
            url = f"http://127.0.0.1:{gateway.port}"
            wait_until(lambda: httpx.get(f"{url}/healthz").json().get("workers"), timeout=30)
            yield url
        finally:
            gateway.stop()
            worker.stop()


@contextlib.contextmanager
def vllm_server(work: Path, model: Path, eager: bool) -> Iterator[str]:
    """vLLM's own OpenAI server as a user starts it (issue #16's command), on the same model
    and engine settings; yields its URL. KV cache: VLLM_CPU_KVCACHE_SPACE, set by main()."""
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
            str(MAX_MODEL_LEN),
            "--max-num-seqs",
            str(MAX_NUM_SEQS),
            *(["--enforce-eager"] if eager else []),
            "--port",
            str(port),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"

    try:
        wait_until(_ready(proc, f"{url}/health", work / "vllm-server.log"), timeout=900)
        yield url
    finally:
        _stop(proc)


def _ready(proc: subprocess.Popen[bytes], health: str, log: Path) -> Callable[[], bool]:
    def ready() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited; see {log}")
        try:
            return httpx.get(health, timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    return ready


def _stop(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, 15)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        proc.wait(10)


def litellm_venv(work: Path) -> Path:
    """LiteLLM's proxy in a venv of its own (it pins versions our platform does not)."""
    venv = work / "litellm-venv"
    binary = venv / "bin" / "litellm"
    if not binary.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", LITELLM_SPEC], check=True)
    return binary


@contextlib.contextmanager
def litellm_proxy(work: Path, model: Path, eager: bool) -> Iterator[str]:
    """LiteLLM's proxy in front of vLLM's server (both up while it is measured)."""
    binary = litellm_venv(work)
    with vllm_server(work, model, eager) as backend:
        config = work / "litellm.yaml"
        config.write_text(
            "model_list:\n"
            f"  - model_name: {MODEL}\n"
            "    litellm_params:\n"
            f"      model: openai/{MODEL}\n"
            f"      api_base: {backend}/v1\n"
            "      api_key: none\n"
        )
        port = free_port()
        log = (work / "litellm.log").open("wb")
        proc = subprocess.Popen(
            [str(binary), "--config", str(config), "--port", str(port), "--num_workers", "1"],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "LITELLM_MASTER_KEY": KEY, "LITELLM_LOG": "ERROR"},
        )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_until(_ready(proc, f"{url}/health/liveliness", work / "litellm.log"), timeout=300)
            yield url
        finally:
            _stop(proc)


TARGETS: dict[
    str, tuple[str, Callable[[Path, Path, bool], contextlib.AbstractContextManager[str]]]
] = {
    "ours": ("gateway (HTTP+Kafka+worker)", ours),
    "vllm": ("vLLM OpenAI server", vllm_server),
    "litellm": ("LiteLLM proxy -> vLLM server", litellm_proxy),
}


def main() -> None:
    global _TOKENIZER
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer requests per level")
    parser.add_argument("--rounds", type=int, default=2, help="rounds per target")
    parser.add_argument("--no-litellm", action="store_true", help="skip LiteLLM's proxy")
    parser.add_argument(
        "--enforce-eager",
        action="store_true",
        help="both targets eager (vLLM's --enforce-eager, LLMOPS_WORKER_ENFORCE_EAGER=true)",
    )
    parser.add_argument(
        "--memory-log",
        action="store_true",
        help="our stack on one memory broker (LLMOPS_EMBEDDED_LOG=memory), not the default log",
    )
    args = parser.parse_args()
    global DURABLE_LOG
    DURABLE_LOG = not args.memory_log
    load_before = os.getloadavg()[0]
    eager = ENFORCE_EAGER or args.enforce_eager
    os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(KV_CACHE_GIB)  # both targets, and in-process
    levels, per_level = [1, 8, 32], 16 if args.quick else 64
    work = Path(os.environ.get("LLMOPS_BENCH_DIR", "/tmp/llmops-bench-serving"))
    work.mkdir(parents=True, exist_ok=True)
    model = ensure_tiny_model(work / "model")
    from transformers import AutoTokenizer

    _TOKENIZER = AutoTokenizer.from_pretrained(str(model))
    targets = [t for t in TARGETS if not (args.no_litellm and t == "litellm")]
    print(
        "| target | concurrency | tokens/s | p50 latency ms | p99 latency ms | "
        "p50 TTFT ms | p99 TTFT ms | CPU ms / 1k tokens |\n|---|---|---|---|---|---|---|---|",
        flush=True,
    )
    runs: dict[tuple[str, int], list[Result]] = {}
    failures: list[str] = []
    prioritized = True  # every level's generator ran at GENERATOR_NICE
    for round_no in range(args.rounds):
        order = targets if round_no % 2 == 0 else targets[::-1]
        for target in order:  # one target alive at a time: started, measured, stopped
            name, start = TARGETS[target]
            try:
                with start(work, model, eager) as url:
                    for concurrency in levels:
                        requests = max(per_level, concurrency * 4)
                        with generator_priority() as raised:
                            result = asyncio.run(load(url, name, concurrency, requests))
                        prioritized = prioritized and raised
                        runs.setdefault((target, concurrency), []).append(result)
                        print(f"round {round_no + 1}: {result.row()}", flush=True)
                        print(f"  CPU ms / 1k tokens: {result.cpu_breakdown()}", flush=True)
                        print(f"  {result.generator()}{result.engine_running()}", flush=True)
            except (RuntimeError, TimeoutError, httpx.HTTPError) as exc:  # report, go on
                failures.append(f"- round {round_no + 1}: {name} failed: {exc!r}")
                print(failures[-1], flush=True)
    targets = [t for t in targets if all((t, c) in runs for c in levels)]
    if "ours" not in targets or "vllm" not in targets:
        raise SystemExit("the gateway or vLLM's server was not measured: " + str(failures))
    merged = {t: [merge(runs[(t, c)]) for c in levels] for t in targets}
    print("merged:\n" + "\n".join(r.row() for t in targets for r in merged[t]))
    ceiling = asyncio.run(in_process(model, 32, per_level * 2, eager))
    print(f"in-process engine, concurrency 32: {ceiling:,.0f} tokens/s")
    lines = []
    for i, concurrency in enumerate(levels):
        mine, peer = merged["ours"][i], merged["vllm"][i]
        line = (
            f"- concurrency {concurrency}: tokens/s {mine.tokens_per_s / peer.tokens_per_s:.2f}x "
            f"vLLM's server; p50 TTFT {mine.pct('ttft', 0.5):.0f} ms vs "
            f"{peer.pct('ttft', 0.5):.0f} ms; "
            f"CPU per token {mine.cpu_per_1k / max(peer.cpu_per_1k, 1e-9):.2f}x"
        )
        if "litellm" in merged:
            lite = merged["litellm"][i]
            line += f"; {mine.tokens_per_s / lite.tokens_per_s:.2f}x LiteLLM's proxy"
        lines.append(line)
    print("\n".join(lines))
    report = [
        "# Serving benchmark",
        "",
        f"Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC. Machine: {MACHINE} "
        f"({platform.machine()}, Python {platform.python_version()}); load average "
        f"{load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end (2 cores: above "
        "~1 per core other work shares the machine and absolute figures are low); compare "
        "within the run only.",
        f"Tiny Llama (bootstrap model), streaming completions of {MAX_TOKENS} tokens, greedy; "
        f"{args.rounds} rounds per target of {per_level}+ requests per level, one target "
        "alive at a time (started, measured at every level, stopped; order alternates by "
        f"round), same engine settings (max-num-seqs {MAX_NUM_SEQS}, KV cache "
        f"{KV_CACHE_GIB} GiB (VLLM_CPU_KVCACHE_SPACE), max-model-len {MAX_MODEL_LEN}, float32, "
        f"{'eager' if eager else 'compiled: no --enforce-eager'}; vLLM's server started with "
        "issue #16's command, our worker with LLMOPS_WORKER_ENFORCE_EAGER="
        f"{str(eager).lower()}; our stack on "
        + (
            "the default embedded log: the durable store, with the serving hops on its "
            "in-memory broker"
            if DURABLE_LOG
            else "one memory broker (--memory-log)"
        )
        + "), same load generator (asyncio, one "
        "keep-alive HTTP/1.1 connection per concurrent user on raw streams: `StreamClient`; "
        "httpx, used before 2026-11-29, needed 3x its CPU per stream and was starved by "
        "vLLM's server at 8 and 32; "
        + (
            f"its thread and its session's autogroup at nice {GENERATOR_NICE} while it "
            "measures, as clients on other machines would not compete with the target, "
            "since 2026-11-29 14:10 UTC"
            if prioritized
            else "at the script's own priority: raising it was not permitted here"
        )
        + "). Tokens counted from the stream "
        "(streamed text re-tokenized). tokens/s: median round; latency and TTFT: all rounds "
        "pooled. CPU ms / 1k tokens: CPU time of the target's processes (not the load "
        "generator), all rounds.",
        "",
        "| target | concurrency | tokens/s | p50 latency ms | p99 latency ms | p50 TTFT ms "
        "| p99 TTFT ms | CPU ms / 1k tokens |",
        "|---|---|---|---|---|---|---|---|",
        *[r.row() for t in targets for r in merged[t]],
        "",
        "CPU ms / 1k tokens by process (all rounds; vLLM's engine processes in both targets):",
        *[
            f"- {r.target}, {r.concurrency}: {r.cpu_breakdown()}"
            for t in targets
            for r in merged[t]
        ],
        "",
        "Load generator (this script; must keep up) and vLLM's engine concurrency "
        "(vllm:num_requests_running, sampled every 250 ms):",
        *[
            f"- {r.target}, {r.concurrency}: {r.generator()}{r.engine_running()}"
            for t in targets
            for r in merged[t]
        ],
        "",
        "In-process engine (AsyncLLM, no HTTP, no Kafka), concurrency 32: "
        f"{ceiling:,.0f} tokens/s.",
        "",
        "Ratios:",
        *lines,
        *(["", "Targets that could not be measured:", *failures] if failures else []),
        "",
        "Goals (issue #16): >= 0.85x vLLM's server tokens/s at 1, 8 and 32; p50 TTFT within "
        "+25 ms at 1 and 1.5x at 32; >= 3x LiteLLM at 32.",
    ]
    out = ROOT / "benchmarks" / "results" / "serving.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(report) + "\n")
    print(f"written {out}")


if __name__ == "__main__":
    main()
