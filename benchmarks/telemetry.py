"""Telemetry benchmark: the same consume -> validate -> publish service with full
instrumentation (``make_broker``: the platform's messaging middleware with OpenTelemetry
tracing through the SDK and a batch span exporter, the metrics on the Prometheus reader)
vs none (a bare KafkaBroker).

Same broker, same 1 kB events carrying a W3C ``traceparent`` header (as every platform event
does), interleaved rounds so that machine noise hits both alike. Prints events/s and the CPU
time per event of each variant; writes benchmarks/results/telemetry.md. Goal: >= 0.95x.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from faststream.middlewares import AckPolicy
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bus import FETCH_WAIT_MS, follow_up, make_event, make_topics, tail_of
from benchmarks.common import median, write_result
from shared.bus import make_broker
from shared.events import AuditRecorded
from shared.settings import ServiceSettings
from shared.stack.broker import start_broker
from shared.telemetry import setup_telemetry
from tests.support.stack import free_port


class CountingExporter(SpanExporter):
    """Receives every span like an OTLP exporter would, without a network in the way."""

    def __init__(self) -> None:
        self.spans = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans += len(spans)
        return SpanExportResult.SUCCESS


EXPORTER = CountingExporter()
READING = (
    "Reading: rounds of the SAME variant swing by up to 2x in CPU per event on this shared "
    "2-core machine (other sessions' tests run alongside; CPU per event also grows when a "
    "round runs slowly), so compare the medians and the best rounds, not single rounds. The "
    "hot-path figure is the middleware's own CPU per event with no sockets; the end-to-end "
    "rounds show more than it (best rounds: about +0.13-0.17 ms per event). What the "
    "isolated loop leaves out: a span in a large, busy process costs more than in a tight "
    "loop (span objects wait in the batch processor's queue, get promoted and make garbage "
    "collection walk the heap: an in-memory-broker run with three spans per event measured "
    "~+100 us of GC per event, full vs none), and FastStream's middleware dispatch. "
    "Sampling is the lever for high-rate services (an event of an unsampled trace costs the "
    "figure above). **The goal of 0.95x is not met end to end here**: runs of this script "
    "on 2026-11-28 after the change gave a per-round median CPU ratio of 0.85x (21:15 UTC, "
    "load ~3), 0.82x (21:23, ~3), 0.80x (21:27, ~2), 0.82x (21:31, ~1.2), 0.67x (21:38, "
    "~4-6), 0.88x (21:42, ~2-4; 0.99x events/s) and a hot path of 51-79 us per event; "
    "the isolated hot path alone would give 0.93-0.96x."
)
BEFORE = (
    "Before (FastStream's OpenTelemetry + Prometheus middlewares: a create, a process and a "
    "publish span per event, unbound metrics): 0.43x events/s on 2026-11-28 14:57 UTC; this "
    "script with CPU time on 2026-11-28 20:53 UTC, 1000 events x 3 rounds, load average ~1: "
    "768 vs 531 events/s (0.69x), 0.862 vs 1.514 ms CPU per event (0.57x)."
)
UNSAMPLED = [("traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00")]
TRACEPARENT = [("traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")]


def _service(instrumented: bool):  # type: ignore[no-untyped-def]
    async def service(bootstrap: str, src: str, dst: str, stop: asyncio.Event) -> None:
        settings = ServiceSettings(kafka_bootstrap=bootstrap)
        broker = (
            make_broker(settings, "bench")
            if instrumented
            else KafkaBroker(  # make_broker's settings, minus the two middlewares
                bootstrap,
                client_id="bench",
                acks="all",
                enable_idempotence=False,
                max_request_size=8 * 1024 * 1024,
                request_timeout_ms=30_000,
                graceful_timeout=15.0,
                allow_auto_create_topics=False,
                logger=None,
            )
        )

        @broker.subscriber(
            src,
            group_id=f"tel-{src}",
            auto_offset_reset="earliest",
            ack_policy=AckPolicy.NACK_ON_ERROR,
            fetch_max_wait_ms=FETCH_WAIT_MS,
        )
        async def handle(message: KafkaMessage) -> None:
            event = AuditRecorded.model_validate_json(message.body)
            await broker.publish(follow_up(event).to_bytes(), dst)

        await broker.start()
        await stop.wait()
        await broker.stop()

    return service


async def measure(
    bootstrap: str,
    src: str,
    dst: str,
    n: int,
    service: Callable[[str, str, str, asyncio.Event], Awaitable[None]],
) -> tuple[float, float]:
    """events/s and CPU ms per event of this process (service, collector and the span
    export thread), both timed from the first output to the last: group joins are not work."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    batch = [producer.send(src, make_event(i), headers=TRACEPARENT) for i in range(n)]
    await asyncio.gather(*[await f for f in batch])
    await producer.stop()
    collector = await tail_of(bootstrap, dst)
    stop = asyncio.Event()
    task = asyncio.create_task(service(bootstrap, src, dst, stop))
    seen = n_first = 0
    first = last = cpu_first = cpu_last = 0.0
    while seen < n:
        got = await collector.getmany(timeout_ms=500)
        count = sum(len(v) for v in got.values())
        if count:
            last, cpu_last = time.perf_counter(), time.process_time()
            if not seen:
                first, cpu_first, n_first = last, cpu_last, count
            seen += count
    stop.set()
    await task
    await collector.stop()
    events = n - n_first
    return events / (last - first), (cpu_last - cpu_first) * 1000 / events


async def hot_path(
    headers: list[tuple[str, bytes]], iterations: int = 20_000
) -> tuple[float, float]:
    """CPU microseconds per event of the telemetry alone, without a broker or sockets: the
    middleware around a handler that publishes one follow-up, with a real FastStream message
    parsed from a record that carries a ``traceparent`` (so noise from the network, the
    broker and other processes stays out). Returns (with telemetry, bare handler)."""
    from aiokafka import ConsumerRecord
    from faststream.kafka.message import KafkaMessage as Message
    from faststream.kafka.parser import AioKafkaParser
    from faststream.kafka.response import KafkaPublishCommand
    from faststream.response.publish_type import PublishType

    from shared.bus.instrument import MessagingTelemetry

    middleware = MessagingTelemetry()
    record = ConsumerRecord("tel.hot", 0, 1, 0, 0, None, make_event(0), None, 1000, -1, headers)
    message = await AioKafkaParser(Message, None).parse_message(record)

    async def sent(_cmd: Any) -> None:
        return None

    async def handler(_msg: Any) -> None:  # what a handler's publish goes through
        cmd = KafkaPublishCommand(b"x", topic="tel.out", _publish_type=PublishType.PUBLISH)
        await middleware(None, context=None).publish_scope(sent, cmd)  # type: ignore[arg-type]

    async def bare(_msg: Any) -> None:
        cmd = KafkaPublishCommand(b"x", topic="tel.out", _publish_type=PublishType.PUBLISH)
        await sent(cmd)

    async def instrumented(msg: Any) -> None:
        await middleware(record, context=None).consume_scope(handler, msg)  # type: ignore[arg-type]

    results = []
    for run in (instrumented, bare):
        for _ in range(1000):  # warm-up
            await run(message)
        started = time.process_time()
        for _ in range(iterations):
            await run(message)
        results.append((time.process_time() - started) * 1e6 / iterations)
    return results[0], results[1]


async def main(n: int, rounds: int) -> None:
    # spans go to an exporter in-process, batched like OTLP (setup_telemetry installs a
    # tracer provider only when OTLP or a spans file is configured)
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(EXPORTER))
    trace.set_tracer_provider(provider)
    setup_telemetry("bench", log_level="WARNING", log_format="text")
    variants = {"no telemetry": _service(False), "full telemetry": _service(True)}
    rates: dict[str, list[float]] = {name: [] for name in variants}
    cpu: dict[str, list[float]] = {name: [] for name in variants}
    with tempfile.TemporaryDirectory() as tmp:
        bootstrap = f"127.0.0.1:{free_port()}"
        broker_proc = start_broker(bootstrap, Path(tmp) / "tansu.log")
        try:
            for r in range(rounds):
                for k, (name, service) in enumerate(variants.items()):
                    src, dst = f"tel.in.{r}{k}", f"tel.out.{r}{k}"
                    await make_topics(bootstrap, src, dst)
                    rate, cpu_ms = await measure(bootstrap, src, dst, n, service)
                    rates[name].append(rate)
                    cpu[name].append(cpu_ms)
                    print(
                        f"round {r + 1} {name:<16} {rate:>8.0f} ev/s {cpu_ms:>7.3f} ms CPU/event",
                        flush=True,
                    )
        finally:
            broker_proc.terminate()
            broker_proc.wait()
    hot, hot_bare = await hot_path(TRACEPARENT)
    unsampled, unsampled_bare = await hot_path(UNSAMPLED)
    print(
        f"telemetry hot path: {hot - hot_bare:.1f} us CPU per event ({hot:.1f} vs {hot_bare:.1f})"
    )
    bare, full = median(rates["no telemetry"]), median(rates["full telemetry"])
    cpu_bare, cpu_full = median(cpu["no telemetry"]), median(cpu["full telemetry"])
    # each round's full variant against the bare one that ran just before it
    pair_rate = median(
        [f / b for f, b in zip(rates["full telemetry"], rates["no telemetry"], strict=True)]
    )
    pair_cpu = median(
        [b / f for f, b in zip(cpu["full telemetry"], cpu["no telemetry"], strict=True)]
    )
    cost_ms = (hot - hot_bare) / 1000
    table = "\n".join(
        [
            "| variant | events/s (median) | CPU ms/event (median) |",
            "|---|---|---|",
            f"| no telemetry | {bare:,.0f} | {cpu_bare:.3f} |",
            f"| full telemetry | {full:,.0f} | {cpu_full:.3f} |",
            f"| **full / none, per round (median)** | **{pair_rate:.2f}x** "
            f"| **{pair_cpu:.2f}x** (none / full) |",
        ]
    )
    per_round = "\n".join(
        f"- {name}: "
        + ", ".join(
            f"{r:,.0f} ev/s {c:.3f} ms" for r, c in zip(rates[name], cpu[name], strict=True)
        )
        for name in variants
    )
    print(table)
    body = (
        f"{n} events of ~1 kB per round (each with a W3C `traceparent` header), {rounds} "
        "interleaved rounds; consume -> validate -> publish (acks=all) -> commit per event, one "
        "embedded tansu broker, load generator in the same process. Full telemetry = "
        "`make_broker` (the platform's messaging middleware, `shared/bus/instrument.py`): "
        f"one CONSUMER span per event, exported {EXPORTER.spans} spans through a batch "
        "processor, the `messaging.*` metrics on the Prometheus reader. CPU ms/event: "
        "`time.process_time()` of the benchmark process (service, collector, span export "
        "thread; not the broker) over the timed window, divided by the events.\n\n"
        + table
        + "\n\nPer round:\n\n"
        + per_round
        + "\n\nTelemetry's own hot path, measured without broker or sockets (the middleware "
        "around a handler that publishes one follow-up, real FastStream message objects, "
        f"20,000 events): **{hot - hot_bare:.1f} us CPU per event** ({hot:.1f} us with it, "
        f"{hot_bare:.1f} us bare). Against the bare service's {cpu_bare:.3f} ms CPU per event "
        f"in this run that is {cost_ms / cpu_bare:.1%}: an expected ratio of "
        f"**{cpu_bare / (cpu_bare + cost_ms):.2f}x**. The same for an event of a trace that "
        "is not sampled (`traceparent` flags 00, e.g. `OTEL_TRACES_SAMPLER="
        "parentbased_traceidratio` at its entry point): "
        f"{unsampled - unsampled_bare:.1f} us.\n\n"
        "Goal: full telemetry >= 0.95x no telemetry.\n\n" + READING + "\n\n" + BEFORE
    )
    print(f"written to {write_result('telemetry', 'Telemetry cost', body)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.events, args.rounds))
