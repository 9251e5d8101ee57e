"""Bus benchmark: a FastStream + pydantic consume->publish service vs a hand-written aiokafka loop.

Same broker (a fresh embedded tansu), same 1 kB events, same work per event: read, validate
into the pydantic model, build the follow-up event, publish it with acks=all, commit the
offset after handling (at-least-once). Each variant as its user would write it at best: the
FastStream service publishes a fetched batch's follow-ups with one ``publish_batch``. Also
measured: the platform's EventBus (inbox + outbox on SQLite), which is what services run.
Prints events/s, ratios and round-trip p50/p99; writes benchmarks/results/bus.md.

Throughput: each service is started, answers warm-up events (its group joined), then gets
a burst of events; events/s is timed from the burst's first send to its last follow-up.
(It was timed from the first follow-up seen to the last: a variant whose output comes in a
few large fetches then counted only the tail, e.g. ~22k events/s for the batched loop.)
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from faststream.kafka import KafkaBroker
from faststream.middlewares import AckPolicy

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import median, pct, write_result
from shared.bus import EventBus, Message, UnitOfWork, make_broker
from shared.bus.offsets import log_end_offsets
from shared.events import AlertRaised, AuditRecorded
from shared.settings import ServiceSettings
from shared.stack.broker import start_broker
from shared.storage import make_engine
from shared.topics import Topic, ensure_topics
from tests.support.stack import free_port

PAD = "x" * 820  # an AuditRecorded of ~1 kB on the wire
FETCH_WAIT_MS = 25  # the same for every variant (a burst is fetched without waiting anyway)
BATCH = 100  # the EventBus default batch
BATCH_TIMEOUT_MS = EventBus.BATCH_TIMEOUT_MS


def make_event(i: int | str) -> bytes:
    return AuditRecorded(
        action="bench", actor="bench", allowed=True, target=str(i), details={"pad": PAD}
    ).to_bytes()


def follow_up(event: AuditRecorded) -> AlertRaised:
    return event.caused(AlertRaised, name="bench", summary=event.target)


async def make_topics(bootstrap: str, *names: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(n, 1, 1) for n in names])
    finally:
        await admin.close()


# -- the three services under test ------------------------------------------------------
async def raw_service(bootstrap: str, src: str, dst: str, stop: asyncio.Event) -> None:
    consumer = AIOKafkaConsumer(
        src,
        bootstrap_servers=bootstrap,
        group_id=f"raw-{src}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=FETCH_WAIT_MS,
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await consumer.start()
    await producer.start()
    try:
        while not stop.is_set():
            try:
                record = await asyncio.wait_for(consumer.getone(), timeout=0.2)
            except TimeoutError:
                continue
            event = AuditRecorded.model_validate_json(record.value)
            await producer.send_and_wait(dst, follow_up(event).to_bytes())
            await consumer.commit()
    finally:
        await consumer.stop()
        await producer.stop()


async def raw_batch_service(bootstrap: str, src: str, dst: str, stop: asyncio.Event) -> None:
    """The hand-written loop at its best: getmany, publish the batch, wait for the acks,
    commit once per batch (still at-least-once)."""
    consumer = AIOKafkaConsumer(
        src,
        bootstrap_servers=bootstrap,
        group_id=f"rawb-{src}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=FETCH_WAIT_MS,
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await consumer.start()
    await producer.start()
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=200, max_records=BATCH)
            pending = []
            for records in batches.values():
                for record in records:
                    event = AuditRecorded.model_validate_json(record.value)
                    pending.append(await producer.send(dst, follow_up(event).to_bytes()))
            if pending:
                await asyncio.gather(*pending)
                await consumer.commit()
    finally:
        await consumer.stop()
        await producer.stop()


async def faststream_service(bootstrap: str, src: str, dst: str, stop: asyncio.Event) -> None:
    """A FastStream batch subscriber (span per batch with links, no per-message DI),
    telemetry and Prometheus middlewares on, as every service's broker has them. The
    follow-ups of a batch go out in ONE ``publish_batch``: what a FastStream user writes
    at best (until 2026-11-29 05:30 UTC, one ``publish`` per event, which cost ~0.02 ms
    CPU per event more); the SDK's ``publish_batch`` sends bytes straight to the aiokafka
    producer, without FastStream's limit of one 16 kB record batch."""
    broker: KafkaBroker = make_broker(ServiceSettings(kafka_bootstrap=bootstrap), "bench")

    @broker.subscriber(
        src,
        group_id=f"fs-{src}",
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.NACK_ON_ERROR,
        fetch_max_wait_ms=FETCH_WAIT_MS,
        batch=True,
        max_records=BATCH,
        batch_timeout_ms=BATCH_TIMEOUT_MS,
    )
    async def handle(message: Message) -> None:
        bodies = [
            follow_up(AuditRecorded.model_validate_json(record.value)).to_bytes()
            for record in message.raw_message  # type: ignore[union-attr]
        ]
        # one publish for the batch (FastStream's ``publish_batch``: one record batch, one
        # ack, awaited before the batch's offsets are committed)
        await broker.publish_batch(*bodies, topic=dst)

    await broker.start()
    await stop.wait()
    await broker.stop()


_RUNS = itertools.count()


async def eventbus_service(bootstrap: str, src: str, dst: str, stop: asyncio.Event) -> None:
    """The platform path: tolerant decode, inbox, outbox, relay (SQLite)."""
    broker = make_broker(ServiceSettings(kafka_bootstrap=bootstrap), "bench")
    tmp = tempfile.mkdtemp()
    engine = make_engine(f"sqlite:///{tmp}/bench.db")
    bus = EventBus(broker, engine, service="bench", fetch_max_wait_ms=FETCH_WAIT_MS)
    relay_topic = Topic.ALERT_RAISED

    async def on_audit_recorded(event: AuditRecorded, uow: UnitOfWork) -> None:
        uow.emit(follow_up(event), topic=relay_topic)

    # the EventBus subscribes by Topic: every run reads the catalogue topic, so each run is
    # a new group starting at its end (a group shared by runs would wait for the departed
    # member's session to expire mid-run: the broker ignores LeaveGroup)
    bus.subscribe(
        Topic.AUDIT_RECORDED,
        on_audit_recorded,
        group=f"bench-eventbus-{next(_RUNS)}",
        auto_offset_reset="latest",
    )
    await broker.start()
    await bus.start()
    await stop.wait()
    await bus.stop()
    await broker.stop()


# -- load and measurement ---------------------------------------------------------------
async def tail_of(bootstrap: str, topic: str) -> AIOKafkaConsumer:
    """A consumer positioned at the current end of every partition of ``topic`` (the end
    from a Fetch: the embedded broker's ListOffsets answers too small an end, see
    ``shared.stack.inspect.log_end_offsets``)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, fetch_max_wait_ms=FETCH_WAIT_MS)
    await consumer.start()
    await consumer._client.force_metadata_update()
    parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or {0}]
    ends = await log_end_offsets(consumer, parts)
    for tp, end in ends.items():
        consumer.seek(tp, end)
    return consumer


WARM = "warm"  # the target of warm-up events (their follow-ups are not counted)


def summary_of(value: bytes | None) -> str:
    """The follow-up's summary: the target of the event it answers."""
    marker = b'"summary":"'
    body = value or b""
    at = body.find(marker) + len(marker)
    return body[at : body.find(b'"', at)].decode()


async def until_serving(
    producer: AIOKafkaProducer, collector: AIOKafkaConsumer, src: str, timeout_s: float = 120
) -> None:
    """Send warm-up events until the service answers one of them: its group has joined and
    it has handled an event (joins are not work; they are not timed)."""
    deadline = time.monotonic() + timeout_s
    sent: set[str] = set()
    while time.monotonic() < deadline:
        target = f"{WARM}-{len(sent)}-{time.monotonic_ns()}"
        sent.add(target)
        await producer.send_and_wait(src, make_event(target))
        got = await collector.getmany(timeout_ms=1000)
        if any(summary_of(r.value) in sent for records in got.values() for r in records):
            return
    raise TimeoutError(f"the service on {src} did not answer in {timeout_s:.0f}s")


async def throughput(
    bootstrap: str,
    src: str,
    dst: str,
    n: int,
    service: Callable[[str, str, str, asyncio.Event], Awaitable[None]],
) -> tuple[float, float]:
    """A burst of ``n`` events at a service that is up and warm: events/s from the first
    send of the burst to its last follow-up, and this process's CPU ms per event meanwhile
    (service, load generator and collector: the last two are the same for every variant,
    and CPU is less disturbed than wall time by other jobs on the machine)."""
    collector = await tail_of(bootstrap, dst)
    stop = asyncio.Event()
    task = asyncio.create_task(service(bootstrap, src, dst, stop))
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        await until_serving(producer, collector, src)
        started, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*[await producer.send(src, make_event(i)) for i in range(n)])
        seen = 0
        while seen < n:
            got = await collector.getmany(timeout_ms=500)
            seen += sum(summary_of(r.value) != WARM for records in got.values() for r in records)
        elapsed = time.perf_counter() - started
        cpu_ms = (time.process_time() - cpu) * 1000 / n
    finally:
        stop.set()
        await task
        await producer.stop()
        await collector.stop()
    return n / elapsed, cpu_ms


async def round_trips(
    bootstrap: str,
    src: str,
    dst: str,
    n: int,
    service: Callable[[str, str, str, asyncio.Event], Awaitable[None]],
) -> list[float]:
    stop = asyncio.Event()
    task = asyncio.create_task(service(bootstrap, src, dst, stop))
    collector = await tail_of(bootstrap, dst)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    await until_serving(producer, collector, src)

    latencies = []
    for i in range(n + 20):
        sent = time.perf_counter()
        await producer.send_and_wait(src, make_event(i))
        answered = False
        while not answered:
            got = await collector.getmany(timeout_ms=2000)
            answered = any(
                summary_of(r.value) == str(i) for records in got.values() for r in records
            )
        if i >= 20:  # warm-up
            latencies.append((time.perf_counter() - sent) * 1000)
    stop.set()
    await task
    await producer.stop()
    await collector.stop()
    return latencies


async def main(n: int, pings: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        bootstrap = f"127.0.0.1:{free_port()}"
        broker_proc = start_broker(bootstrap, Path(tmp) / "tansu.log")
        try:
            await ensure_topics(bootstrap)
            variants = {
                "aiokafka (peer)": raw_service,
                "aiokafka batched (getmany)": raw_batch_service,
                "FastStream + pydantic": faststream_service,
                "EventBus (inbox+outbox, SQLite)": eventbus_service,
            }
            rates: dict[str, list[float]] = {name: [] for name in variants}
            cpus: dict[str, list[float]] = {name: [] for name in variants}
            lat: dict[str, list[float]] = {name: [] for name in variants}
            for r in range(rounds):  # interleaved rounds: noise hits every variant alike
                for k, (name, svc) in enumerate(variants.items()):
                    tag = f"{r}{k}"
                    if svc is eventbus_service:
                        src, dst = Topic.AUDIT_RECORDED.value, Topic.ALERT_RAISED.value
                        await drain_topics(bootstrap)
                    else:
                        src, dst = f"bench.in.{tag}", f"bench.out.{tag}"
                        await make_topics(bootstrap, src, dst, src + ".rt", dst + ".rt")
                    rate, cpu_ms = await throughput(bootstrap, src, dst, n, svc)
                    rates[name].append(rate)
                    cpus[name].append(cpu_ms)
                    if svc is not eventbus_service:
                        src, dst = src + ".rt", dst + ".rt"
                    lat[name] += await round_trips(bootstrap, src, dst, pings, svc)
                    print(
                        f"round {r + 1} {name:<34} {rate:>8.0f} ev/s {cpu_ms:.3f} ms CPU/event",
                        flush=True,
                    )
        finally:
            broker_proc.terminate()
            broker_proc.wait()
    peer = median(rates["aiokafka (peer)"])
    batched = median(rates["aiokafka batched (getmany)"])
    peer_p99 = pct(lat["aiokafka (peer)"], 99)
    lines = [
        "| implementation | events/s (median) | ratio vs aiokafka | ratio vs aiokafka batched "
        "| CPU ms/event (process) | CPU vs batched | round trip p50 ms | p99 ms "
        "| p99 vs aiokafka |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    batched_cpu = median(cpus["aiokafka batched (getmany)"])
    for name, samples in rates.items():
        rate = median(samples)
        p50, p99 = pct(lat[name], 50), pct(lat[name], 99)
        lines.append(
            f"| {name} | {rate:,.0f} | {rate / peer:.2f} | {rate / batched:.2f} "
            f"| {median(cpus[name]):.3f} | {median(cpus[name]) / batched_cpu:.2f} "
            f"| {p50:.2f} | {p99:.2f} | {p99 / peer_p99:.2f} |"
        )
    table = "\n".join(lines)
    print(table)
    fs = median(rates["FastStream + pydantic"])
    eb = median(rates["EventBus (inbox+outbox, SQLite)"])
    p99s = {name: pct(values, 99) for name, values in lat.items()}
    worst_p99 = max(p99s["FastStream + pydantic"], p99s["EventBus (inbox+outbox, SQLite)"])

    def verdict(ratio: float, goal: float, at_most: bool = False) -> str:
        met = ratio <= goal if at_most else ratio >= goal
        return f"{ratio:.2f}x ({'met' if met else 'NOT met'})"

    goals = (
        "Goals (issue #14), judged against the batched aiokafka loop: for bursty "
        "consume -> publish that is what an aiokafka user writes (the per-event loop, which "
        "the goals were first written against, in brackets):\n"
        f"- FastStream service >= 0.85x: {verdict(fs / batched, 0.85)} "
        f"[{verdict(fs / peer, 0.85)}]\n"
        f"- EventBus with inbox + outbox >= 0.6x: {verdict(eb / batched, 0.6)} "
        f"[{verdict(eb / peer, 0.6)}]\n"
        "- round-trip p99 <= 1.2x raw at low load (one event at a time: the worse of "
        "FastStream and EventBus against the per-event loop): "
        f"{verdict(worst_p99 / peer_p99, 1.2, at_most=True)}\n"
        "- CPU per event against the batched loop (the throughput goals in CPU terms; the "
        "load generator's share is in every variant): FastStream "
        f"{median(cpus['FastStream + pydantic']) / batched_cpu:.2f}x, EventBus "
        f"{median(cpus['EventBus (inbox+outbox, SQLite)']) / batched_cpu:.2f}x"
    )
    print(goals)
    body = (
        f"{n} events of ~1 kB per round, {rounds} interleaved rounds, "
        f"{pings} sequential round trips per variant and round; "
        "consume -> validate -> publish (acks=all) -> commit: per event for `aiokafka (peer)`, "
        f"per fetched batch (up to {BATCH}) for the others; "
        "one embedded tansu broker (in memory), load generator in the same process; "
        "throughput timed from a burst's first send to its last follow-up, the service up "
        "and warm.\n\n"
        + table
        + "\n\n"
        + goals
        + f"\n\nLoad average at the end of the run: {os.getloadavg()[0]:.1f} "
        f"({os.cpu_count()} cores): above ~1 per core the figures are noise."
    )
    print(f"written to {write_result('bus', 'Bus: FastStream service vs raw aiokafka', body)}")


async def drain_topics(bootstrap: str) -> None:
    """The EventBus variant uses the catalogue topics; nothing to do but make sure they exist."""
    await ensure_topics(bootstrap)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--pings", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    # a `timeout` or Ctrl-C still stops the embedded broker (main's finally)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    asyncio.run(main(args.events, args.pings, args.rounds))
