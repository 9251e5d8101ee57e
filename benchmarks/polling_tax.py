"""The polling tax: what the embedded broker's fetch polling alone costs vLLM's own server.

The embedded broker (tansu 0.6) does not answer a waiting fetch when data arrives, so the
serving hops' consumers fetch every few milliseconds while requests run, data or not
(docs/serving.md, "The polling tax"). This script measures that cost on the peer itself:
vLLM's OpenAI server (as `benchmarks/serving.py` starts it), streaming completions at
concurrency 1 and 8, alone and with **only our serving hops' polling** beside it: a memory
tansu as the embedded stack starts it and, each in a process and session of its own as our
services run, the consumers that fetch from it while requests are in flight:

- the worker's request consumer: `inference.requested` (all its partitions), the worker's
  busy fetch wait (`WorkerSettings.fetch_max_wait_ms`);
- the gateway's reply consumer: its reply topic and the heartbeats, the gateway's busy wait
  (`GatewaySettings.fetch_max_wait_ms`);
- the worker's cancel consumer (`max(busy wait, 100)` ms).

No record flows: every fetch is empty, as most are while tokens stream. What the peer loses
with them is a lower bound of what the polling costs our stack on the same cores (the
durable log's consumers, the hops' own latency and the requests' real work come on top).
Rounds alternate the order; one target alive at a time (the pollers are the only change).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import median, write_result  # noqa: E402
from benchmarks.serving import (  # noqa: E402
    KV_CACHE_GIB,
    MACHINE,
    MAX_TOKENS,
    Result,
    generator_priority,
    load,
    merge,
    vllm_server,
)
from shared.modelkit import ensure_tiny_model  # noqa: E402
from shared.stack.broker import start_broker, stop_process  # noqa: E402
from shared.topics import SPECS, Topic  # noqa: E402
from tests.support.stack import free_port  # noqa: E402

LEVELS = (1, 8)
CANCEL_WAIT_FLOOR_MS = 100  # services/serving/worker/handlers.py: the cancel consumer


@dataclass(frozen=True)
class Poller:
    """One consumer of the serving hops, as a service holds it while requests run."""

    name: str
    topics: tuple[str, ...]
    partitions: int
    wait_ms: int


def pollers() -> list[Poller]:
    """The memory broker's consumers while busy, with the services' own defaults."""
    from services.serving.gateway.config import GatewaySettings
    from services.serving.worker.config import WorkerSettings

    worker_wait = WorkerSettings().fetch_max_wait_ms
    requests = SPECS[Topic.INFERENCE_REQUESTED].partitions
    return [
        Poller("worker requests", ("requested",), requests, worker_wait),
        Poller(
            "gateway replies",
            ("replies", "heartbeats"),
            SPECS[Topic.WORKER_HEARTBEAT].partitions,
            GatewaySettings().fetch_max_wait_ms,
        ),
        Poller("worker cancels", ("cancels",), 1, max(worker_wait, CANCEL_WAIT_FLOOR_MS)),
    ]


async def poll(bootstrap: str, poller: Poller) -> None:
    """Hold one consumer fetching ``poller``'s topics forever (run in its own process)."""
    from aiokafka import AIOKafkaConsumer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import TopicAlreadyExistsError

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(t, poller.partitions, 1) for t in poller.topics])
    except TopicAlreadyExistsError:
        pass
    finally:
        await admin.close()
    consumer = AIOKafkaConsumer(
        *poller.topics,
        bootstrap_servers=bootstrap,
        fetch_max_wait_ms=poller.wait_ms,
        auto_offset_reset="latest",
        enable_auto_commit=False,
    )
    await consumer.start()
    while True:
        await consumer.getmany(timeout_ms=1000)


class Polling:
    """The memory broker and the pollers, each in a session of its own; CPU they use."""

    def __init__(self, work: Path) -> None:
        self.bootstrap = f"127.0.0.1:{free_port()}"
        self.broker = start_broker(self.bootstrap, work / "polling-broker.log")
        self.procs = [
            subprocess.Popen(
                [sys.executable, __file__, "--poll", self.bootstrap, str(i)],
                start_new_session=True,
            )
            for i in range(len(pollers()))
        ]
        self.ps = [psutil.Process(p.pid) for p in [self.broker, *self.procs]]
        time.sleep(3)  # consumers joined and fetching

    def cpu_s(self) -> float:
        return sum(sum(p.cpu_times()[:2]) for p in self.ps)

    def stop(self) -> None:
        for proc in self.procs:
            proc.kill()
            proc.wait()
        stop_process(self.broker)


def measure(url: str, concurrency: int, requests: int) -> Result:
    with generator_priority():
        return asyncio.run(load(url, "vLLM's server", concurrency, requests))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=64, help="requests per level")
    parser.add_argument("--poll", nargs=2, metavar=("BOOTSTRAP", "INDEX"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.poll:  # a poller process
        import uvloop  # as our services run

        uvloop.run(poll(args.poll[0], pollers()[int(args.poll[1])]))
        return
    os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(KV_CACHE_GIB)
    work = Path(os.environ.get("LLMOPS_BENCH_DIR", "/tmp/llmops-bench-serving"))
    work.mkdir(parents=True, exist_ok=True)
    model = ensure_tiny_model(work / "model")
    from transformers import AutoTokenizer

    import benchmarks.serving as serving

    serving._TOKENIZER = AutoTokenizer.from_pretrained(str(model))  # tokens from the stream
    rows: dict[tuple[str, int], list[tuple[Result, float]]] = {}
    with vllm_server(work, model, eager=False) as url:
        measure(url, 1, 16)  # warm-up
        for round_no in range(args.rounds):
            modes = ["alone", "polling"] if round_no % 2 == 0 else ["polling", "alone"]
            for mode in modes:
                polling = Polling(work) if mode == "polling" else None
                try:
                    for concurrency in LEVELS:
                        before, started = polling.cpu_s() if polling else 0.0, time.time()
                        result = measure(url, concurrency, max(args.requests, concurrency * 8))
                        spent = (polling.cpu_s() - before) if polling else 0.0
                        tax = 1000 * spent / (time.time() - started)
                        rows.setdefault((mode, concurrency), []).append((result, tax))
                        print(
                            f"round {round_no + 1}, {mode:7s} concurrency {concurrency}: "
                            f"{result.tokens_per_s:,.0f} tokens/s, TTFT p50 "
                            f"{result.pct('ttft', 0.5):.1f} ms, latency p50 "
                            f"{result.pct('latency', 0.5):.1f} ms; broker + pollers "
                            f"{tax:.0f} ms CPU per s",
                            flush=True,
                        )
                finally:
                    if polling:
                        polling.stop()
    report(rows, args.rounds)


def report(rows: dict[tuple[str, int], list[tuple[Result, float]]], rounds: int) -> None:
    waits = ", ".join(f"{p.name} {p.wait_ms} ms" for p in pollers())
    lines = [
        f"Machine: {MACHINE}. vLLM's OpenAI server (compiled, the serving benchmark's engine "
        f"settings), streaming completions of {MAX_TOKENS} tokens, {rounds} rounds per mode, "
        "modes alternating; **polling**: a memory tansu with our serving hops' consumers "
        f"fetching it as they do while requests run ({waits}; no records), nothing else "
        "changed. Medians of the rounds; TTFT and latency p50 of all rounds pooled.",
        "",
        "| concurrency | mode | tokens/s (rounds) | median | TTFT p50 ms | latency p50 ms "
        "| broker + pollers CPU ms/s |",
        "|---|---|---|---|---|---|---|",
    ]
    ratios = []
    for concurrency in LEVELS:
        medians = {}
        for mode in ("alone", "polling"):
            runs = rows[(mode, concurrency)]
            rates = [r.tokens_per_s for r, _ in runs]
            medians[mode] = median(rates)
            pooled = merge([r for r, _ in runs])  # every round's samples together
            lines.append(
                f"| {concurrency} | {mode} | {' / '.join(f'{x:,.0f}' for x in rates)} | "
                f"{medians[mode]:,.0f} | {pooled.pct('ttft', 0.5):.1f} | "
                f"{pooled.pct('latency', 0.5):.1f} | "
                f"{median([t for _, t in runs]):.0f} |"
            )
        ratios.append(
            f"concurrency {concurrency}: {medians['polling'] / medians['alone']:.2f}x of itself"
        )
    lines += ["", "vLLM's server with the polling beside it: " + "; ".join(ratios) + "."]
    body = "\n".join(lines)
    print(body)
    path = write_result("polling_tax", "The polling tax (vLLM's server beside our polling)", body)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
