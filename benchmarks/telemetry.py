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
    bare, full = median(rates["no telemetry"]), median(rates["full telemetry"])
    cpu_bare, cpu_full = median(cpu["no telemetry"]), median(cpu["full telemetry"])
    table = "\n".join(
        [
            "| variant | events/s (median) | ratio vs none | CPU ms/event (median) | CPU ratio |",
            "|---|---|---|---|---|",
            f"| no telemetry | {bare:,.0f} | 1.00 | {cpu_bare:.3f} | 1.00 |",
            f"| full telemetry | {full:,.0f} | {full / bare:.2f} | {cpu_full:.3f} "
            f"| {cpu_bare / cpu_full:.2f} |",
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
        f"{n} events of ~1 kB per round, {rounds} interleaved rounds; consume -> validate -> "
        "publish (acks=all) -> commit per event, one embedded tansu broker, load generator in "
        f"the same process. Full telemetry exported {EXPORTER.spans} spans (batch processor). "
        "CPU ms/event: `time.process_time()` of the benchmark process (service, collector, "
        "span export thread; not the broker) over the timed window, divided by the events; "
        "CPU ratio = none / full (1.00: telemetry costs no CPU).\n\n"
        + table
        + "\n\nPer round:\n\n"
        + per_round
        + "\n\nGoal: full telemetry >= 0.95x no telemetry."
    )
    print(f"written to {write_result('telemetry', 'Telemetry cost', body)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.events, args.rounds))
