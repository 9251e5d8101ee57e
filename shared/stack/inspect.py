"""Read-only views of a running platform: health, topics, consumer lag."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from shared.plugins import process_by_label, processes
from shared.settings import ServiceSettings
from shared.stack.supervisor import read_state
from shared.topics import is_ephemeral

TopicFilter = Callable[[str], bool]


def _split(bootstrap: str, ephemeral_bootstrap: str | None) -> list[tuple[str, TopicFilter]]:
    """Each broker to read with the topics it carries: the main log every topic but the
    serving hops, the serving hops' broker those (one broker: every topic)."""
    if not ephemeral_bootstrap or ephemeral_bootstrap == bootstrap:
        return [(bootstrap, lambda _name: True)]
    return [(bootstrap, lambda name: not is_ephemeral(name)), (ephemeral_bootstrap, is_ephemeral)]


def _security() -> dict[str, Any]:
    """SASL options of the environment (the production cluster); empty on the embedded one."""
    return dict(ServiceSettings().kafka_client_options())


async def topic_offsets(
    bootstrap: str, ephemeral_bootstrap: str | None = None
) -> dict[str, dict[str, Any]]:
    """topic -> {partitions, messages} (end minus beginning offsets), of the main log and,
    when given, of the serving hops' broker (``shared.topics.bootstrap_for``)."""
    out: dict[str, dict[str, Any]] = {}
    for server, wanted in _split(bootstrap, ephemeral_bootstrap):
        out.update(await _topic_offsets(server, wanted))
    return dict(sorted(out.items()))


async def _topic_offsets(bootstrap: str, wanted: TopicFilter) -> dict[str, dict[str, Any]]:
    from shared.bus.offsets import log_end_offsets  # the CLI stays light: no bus at start

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=50, **_security()
    )
    await consumer.start()
    try:
        topics = sorted(t for t in await consumer.topics() if not t.startswith("__") and wanted(t))
        parts = [
            TopicPartition(t, p)
            for t in topics
            for p in sorted(consumer.partitions_for_topic(t) or ())
        ]
        begin = await consumer.beginning_offsets(parts) if parts else {}
        end = await log_end_offsets(consumer, parts)
        out: dict[str, dict[str, Any]] = {t: {"partitions": 0, "messages": 0} for t in topics}
        for tp in parts:
            out[tp.topic]["partitions"] += 1
            out[tp.topic]["messages"] += end[tp] - begin[tp]
        return out
    finally:
        await consumer.stop()


async def consumer_groups(bootstrap: str) -> list[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000, **_security())
    await admin.start()
    try:
        return sorted(
            {g[0] if isinstance(g, tuple) else g for g in await admin.list_consumer_groups()}
        )
    finally:
        await admin.close()


async def committed_offsets(
    bootstrap: str, group: str, partitions: list[TopicPartition]
) -> dict[TopicPartition, int]:
    """The group's committed offsets, through the consumer's OffsetFetch (the admin client's
    request version is not understood by every Kafka-protocol broker)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False, **_security()
    )
    await consumer.start()
    try:
        fetched = await consumer._coordinator.fetch_committed_offsets(set(partitions))
        return {tp: meta.offset for tp, meta in fetched.items() if meta.offset >= 0}
    finally:
        await consumer.stop()


async def consumer_lag(
    bootstrap: str,
    known: dict[str, list[str]] | None = None,
    ephemeral_bootstrap: str | None = None,
) -> dict[str, dict[str, int]]:
    """consumer group -> topic -> lag (messages after the committed offset).

    Groups are those the broker lists plus ``known`` (group -> topics, as running services
    report them on /healthz): not every Kafka-protocol broker lists groups (the embedded one
    on its durable storage does not). For a known group, a partition it never committed
    counts from the beginning: with ``auto_offset_reset=earliest`` it will read all of it.
    With ``ephemeral_bootstrap`` (the serving hops' broker) the lag on the serving hops is
    read there and added: inference requests waiting for a worker are a serving signal.
    """
    lag: dict[str, dict[str, int]] = {}
    for server, wanted in _split(bootstrap, ephemeral_bootstrap):
        mine = {g: t for g, t in (known or {}).items() if not t or any(wanted(name) for name in t)}
        for group, per_topic in (await _consumer_lag(server, mine, wanted)).items():
            lag.setdefault(group, {}).update(per_topic)
    return lag


async def _consumer_lag(
    bootstrap: str, known: dict[str, list[str]], wanted: TopicFilter
) -> dict[str, dict[str, int]]:
    from shared.bus.offsets import log_end_offsets

    groups = sorted(set(await consumer_groups(bootstrap)) | set(known))
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=50, **_security()
    )
    await consumer.start()
    try:
        topics = sorted(t for t in await consumer.topics() if t.startswith("llmops.") and wanted(t))
        parts = [
            TopicPartition(t, p) for t in topics for p in consumer.partitions_for_topic(t) or ()
        ]
        begins = await consumer.beginning_offsets(parts) if parts else {}
        ends = await log_end_offsets(consumer, parts)
    finally:
        await consumer.stop()
    lag: dict[str, dict[str, int]] = {}
    for group in groups:
        committed = await committed_offsets(bootstrap, group, parts)
        subscribed = set(known.get(group, ()))
        per_topic: dict[str, int] = {}
        for tp in parts:
            if tp in committed:
                per_topic[tp.topic] = per_topic.get(tp.topic, 0) + max(0, ends[tp] - committed[tp])
            elif tp.topic in subscribed:
                per_topic[tp.topic] = per_topic.get(tp.topic, 0) + ends[tp] - begins[tp]
        if per_topic:
            lag[group] = per_topic
    return lag


def reported_groups(rows: list[dict[str, Any]]) -> dict[str, list[str]]:
    """group -> topics, from the /healthz details of ``process_health`` rows, or else what
    the supervisor last saw there (a service that does not answer still owns its groups)."""
    groups: dict[str, list[str]] = {}
    for row in rows:
        reported = (row.get("detail") or {}).get("consumer_groups") or row.get("consumer_groups")
        for group, topics in (reported or {}).items():
            groups[group] = sorted(set(groups.get(group, [])) | set(topics))
    return groups


def process_health(settings: ServiceSettings) -> list[dict[str, Any]]:
    state = read_state(settings)
    if state:
        procs = state["processes"]
    else:
        procs = [
            {"label": p.label, "service": p.service, "port": p.resolved_port, "pid": None}
            for p in processes()
        ]
    rows = []
    for proc in procs:
        spec = process_by_label(proc["label"])
        path = spec.health_path if spec else "/healthz"
        url = f"http://127.0.0.1:{proc['port']}{path}"
        try:
            response = httpx.get(url, timeout=2)
            status = (
                "healthy" if response.status_code == 200 else f"unhealthy ({response.status_code})"
            )
            detail = (
                response.json()
                if response.headers.get("content-type", "").startswith("application/json")
                else {}
            )
        except httpx.HTTPError:
            status, detail = "down", {}
        rows.append({**proc, "url": url, "status": status, "detail": detail})
    return rows
