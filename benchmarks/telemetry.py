"""Telemetry benchmark: the same consume -> validate -> publish service with full
instrumentation (OpenTelemetry tracing with the SDK and a batch span exporter, the OTel and
Prometheus FastStream middlewares, the Prometheus reader) vs none (a bare KafkaBroker).

Same broker, same 1 kB events, interleaved rounds so that machine noise hits both alike.
Prints events/s and the ratio; writes benchmarks/results/telemetry.md. Goal: >= 0.95x.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from faststream.middlewares import AckPolicy
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bus import FETCH_WAIT_MS, follow_up, make_topics, throughput
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


async def main(n: int, rounds: int) -> None:
    setup_telemetry("bench", log_level="WARNING", log_format="text")
    provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider)
    provider.add_span_processor(BatchSpanProcessor(EXPORTER))
    variants = {"no telemetry": _service(False), "full telemetry": _service(True)}
    rates: dict[str, list[float]] = {name: [] for name in variants}
    with tempfile.TemporaryDirectory() as tmp:
        bootstrap = f"127.0.0.1:{free_port()}"
        broker_proc = start_broker(bootstrap, Path(tmp) / "tansu.log")
        try:
            for r in range(rounds):
                for k, (name, service) in enumerate(variants.items()):
                    src, dst = f"tel.in.{r}{k}", f"tel.out.{r}{k}"
                    await make_topics(bootstrap, src, dst)
                    rates[name].append(await throughput(bootstrap, src, dst, n, service))
                    print(f"round {r + 1} {name:<16} {rates[name][-1]:>8.0f} ev/s", flush=True)
        finally:
            broker_proc.terminate()
            broker_proc.wait()
    bare = median(rates["no telemetry"])
    full = median(rates["full telemetry"])
    table = "\n".join(
        [
            "| variant | events/s (median) | ratio vs none |",
            "|---|---|---|",
            f"| no telemetry | {bare:,.0f} | 1.00 |",
            f"| full telemetry | {full:,.0f} | {full / bare:.2f} |",
        ]
    )
    print(table)
    body = (
        f"{n} events of ~1 kB per round, {rounds} interleaved rounds; consume -> validate -> "
        "publish (acks=all) -> commit per event, one embedded tansu broker, load generator in "
        f"the same process. Full telemetry exported {EXPORTER.spans} spans (batch processor).\n\n"
        + table
        + "\n\nGoal: full telemetry >= 0.95x no telemetry."
    )
    print(f"written to {write_result('telemetry', 'Telemetry cost', body)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.events, args.rounds))
