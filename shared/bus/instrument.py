"""Messaging telemetry of every service, cheap by design.

One FastStream middleware (``MessagingTelemetry``, installed by ``make_broker``) and the
EventBus share this module, so every service gets the same spans and metrics without code
of its own. OpenTelemetry semantic-convention names (``messaging.*``, ``error.type``):

Spans: ONE span per consumed event, ``<topic> process`` (kind CONSUMER), child of the
producer's context from the record's ``traceparent`` header. A publish made while an event
is processed creates no span of its own: the current consumer span's context goes into the
message's headers, so the next consumer's span is its child and the chain holds across
processes. A publish outside a handler (HTTP routes, the outbox relay, clients) gets one
``<topic> publish`` span (kind PRODUCER). Batch subscribers: the EventBus opens the span of
each event of a fetched batch (a batch span with links would cut the parent/child chain).

Metrics (Prometheus names in brackets), attributes ``messaging.system=kafka``,
``messaging.destination.name``, ``messaging.consumer.group.name``, ``error.type`` on failures:
- ``messaging.client.consumed.messages`` [messaging_client_consumed_messages_total]
- ``messaging.process.duration`` [messaging_process_duration_seconds]: one message, or one
  fetched batch for batch subscribers
- ``messaging.client.sent.messages`` [messaging_client_sent_messages_total]
- ``llmops.messaging.consumer.lag`` [llmops_messaging_consumer_lag], per partition
  (``messaging.destination.partition.id``): the partition's high watermark minus the offset
  after the record in hand, as the consumer saw it on its last fetch (no broker call);
  sampled at most once a second per partition
- ``llmops.messaging.dead_lettered`` [llmops_messaging_dead_lettered_total]: messages sent to
  ``<topic>.dlq``, ``error.type`` = the reason

Spans are made without the SDK's ``Span`` class (``_Span``, ``_start``): the SDK's sampler,
id generator, resource and span processors decide and receive them as they would from
``Tracer.start_span``, but the hot path builds one small object while the event is handled
and one ``ReadableSpan`` when it ends (the SDK's span costs ~30 us and a dozen objects per
event). The handler's current span is a ``NonRecordingSpan`` carrying the span's context:
publishes and log lines see the right ids; attributes or events added from inside a handler
are not recorded, and processors see ``on_end`` only.

Counters are pre-bound: a slot per attribute set holds a plain integer that the hot path
increments, and an observable counter reports the slots when a reader collects (Prometheus
scrape, OTLP export). Attribute mappings are built once per slot, never per message.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from time import time_ns
from typing import TYPE_CHECKING, Any

from aiokafka import TopicPartition
from faststream._internal.middlewares import BaseMiddleware
from faststream.exceptions import IgnoredException
from opentelemetry import context, metrics, trace
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace import Tracer as SdkTracer
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

if TYPE_CHECKING:
    from faststream._internal.context.repository import ContextRepo
    from faststream.message import StreamMessage

SYSTEM = "kafka"
LAG_SAMPLE_S = 1.0  # most one lag reading per partition and second

_meter = metrics.get_meter("llmops.bus")
_propagator = TraceContextTextMapPropagator()  # W3C trace context only: no baggage parsing
# the record whose consumer span is current (set by whoever opened it)
_consuming: ContextVar[Any] = ContextVar("llmops_consuming", default=None)


class _Counter:
    """A counter's value for one attribute set: ``slot.value += n`` is the whole hot path."""

    __slots__ = ("attributes", "value")

    def __init__(self, attributes: dict[str, str]) -> None:
        self.attributes = attributes
        self.value = 0


class _Slots:
    """The slots of one observable counter, keyed by the caller's tuple of label values."""

    def __init__(self, name: str, description: str, unit: str = "{message}") -> None:
        self.slots: dict[tuple[str, ...], _Counter] = {}
        _meter.create_observable_counter(
            name, callbacks=[self._observe], unit=unit, description=description
        )

    def slot(self, key: tuple[str, ...], attributes: dict[str, str]) -> _Counter:
        found = self.slots.get(key)
        if found is None:
            found = self.slots[key] = _Counter(attributes)
        return found

    def _observe(self, _options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(s.value, s.attributes) for s in list(self.slots.values())]


_consumed = _Slots("messaging.client.consumed.messages", "Messages delivered to a handler.")
_sent = _Slots("messaging.client.sent.messages", "Messages handed to the producer.")
_dead = _Slots("llmops.messaging.dead_lettered", "Messages sent to a dead-letter topic.")
_handled = _Slots(
    "llmops_events_handled", "Events handled by the EventBus, by topic, handler and outcome.", ""
)
_duration = _meter.create_histogram(
    "messaging.process.duration",
    unit="s",
    description="Handler time of one delivery (a message, or a fetched batch).",
)
_lags: dict[tuple[str, int, str], tuple[int, dict[str, str]]] = {}


def _observe_lag(_options: CallbackOptions) -> Iterable[Observation]:
    return [Observation(lag, attrs) for lag, attrs in list(_lags.values())]


_meter.create_observable_gauge(
    "llmops.messaging.consumer.lag",
    callbacks=[_observe_lag],
    unit="{message}",
    description="Messages behind the partition's high watermark, per consumer group.",
)


class Consumption:
    """Everything pre-built for one (topic, consumer group): span name and attributes,
    the counter slot, the histogram's attributes, the lag sampling clock."""

    __slots__ = ("attributes", "consumed", "group", "next_lag", "span_attributes", "span_name")

    def __init__(self, topic: str, group: str | None) -> None:
        self.group = group or ""
        self.attributes = {
            "messaging.system": SYSTEM,
            "messaging.destination.name": topic,
        }
        if group:
            self.attributes["messaging.consumer.group.name"] = group
        self.span_name = f"{topic} process"
        self.span_attributes = {**self.attributes, "messaging.operation.type": "process"}
        self.consumed = _consumed.slot((topic, self.group, ""), self.attributes)
        self.next_lag: dict[int, float] = {}

    def failed(self, error: BaseException, count: int) -> dict[str, str]:
        """Count a failed delivery; returns the attributes with ``error.type``."""
        kind = type(error).__qualname__
        attributes = {**self.attributes, "error.type": kind}
        _consumed.slot((*self._key(), kind), attributes).value += count
        return attributes

    def _key(self) -> tuple[str, str]:
        return (self.attributes["messaging.destination.name"], self.group)

    def sample_lag(self, consumer: Any, partition: int, offset: int) -> None:
        """Record the lag after ``offset`` from the consumer's last fetch (no I/O)."""
        now = time.monotonic()
        if now < self.next_lag.get(partition, 0.0):
            return
        self.next_lag[partition] = now + LAG_SAMPLE_S
        topic = self.attributes["messaging.destination.name"]
        try:
            highwater = consumer.highwater(TopicPartition(topic, partition))
        except Exception:  # not assigned any more (rebalance), or not a Kafka consumer
            return
        if highwater is None:
            return
        key = (topic, partition, self.group)
        previous = _lags.get(key)
        attributes = (
            previous[1]
            if previous
            else {**self.attributes, "messaging.destination.partition.id": str(partition)}
        )
        _lags[key] = (max(0, highwater - offset - 1), attributes)


_consumptions: dict[tuple[str, str | None], Consumption] = {}


def consumption(topic: str, group: str | None) -> Consumption:
    found = _consumptions.get((topic, group))
    if found is None:
        found = _consumptions[(topic, group)] = Consumption(topic, group)
    return found


class Production:
    __slots__ = ("attributes", "sent", "span_attributes", "span_name")

    def __init__(self, topic: str) -> None:
        self.attributes = {"messaging.system": SYSTEM, "messaging.destination.name": topic}
        self.span_name = f"{topic} publish"
        self.span_attributes = {**self.attributes, "messaging.operation.type": "send"}
        self.sent = _sent.slot((topic, ""), self.attributes)

    def failed(self, error: BaseException, count: int) -> None:
        kind = type(error).__qualname__
        topic = self.attributes["messaging.destination.name"]
        _sent.slot((topic, kind), {**self.attributes, "error.type": kind}).value += count


_productions: dict[str, Production] = {}


def production(topic: str) -> Production:
    found = _productions.get(topic)
    if found is None:
        found = _productions[topic] = Production(topic)
    return found


def handled(topic: str, handler: str, outcome: str) -> _Counter:
    """The EventBus' bound counter of one (topic, handler, outcome): applied, duplicate,
    dead-lettered, unauthorized."""
    return _handled.slot(
        (topic, handler, outcome), {"topic": topic, "handler": handler, "outcome": outcome}
    )


def dead_lettered(topic: str, group: str | None, reason: str) -> None:
    """Count one message sent to ``<topic>.dlq`` (cold path)."""
    attributes = {**consumption(topic, group).attributes, "error.type": reason}
    _dead.slot((topic, group or "", reason), attributes).value += 1


def _parent(headers: Iterable[tuple[str, Any]] | dict[str, Any] | None) -> context.Context | None:
    """The producer's context from ``traceparent``/``tracestate`` headers, or None."""
    if not headers:
        return None
    if isinstance(headers, dict):
        if "traceparent" not in headers:
            return None
        carrier = headers
    else:
        carrier = {
            name: value.decode("latin-1") if isinstance(value, bytes) else value
            for name, value in headers
            if name in ("traceparent", "tracestate")
        }
        if not carrier:
            return None
    return _propagator.extract(carrier)


_UNSET = Status(StatusCode.UNSET)
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_NOT_SAMPLED = TraceFlags(TraceFlags.DEFAULT)
_sdk_of: tuple[Any, SdkTracer | None] = (None, None)  # (global provider, its SDK tracer)


def _sdk_tracer() -> SdkTracer | None:
    """The SDK tracer of the global provider (None: no SDK provider, spans record nothing)."""
    global _sdk_of
    provider = trace.get_tracer_provider()
    if provider is not _sdk_of[0]:
        tracer = provider.get_tracer("llmops.bus")
        _sdk_of = (provider, tracer if isinstance(tracer, SdkTracer) else None)
    return _sdk_of[1]


class _Span:
    """A span in flight, recorded the cheap way: the SDK's sampler, id generator, resource
    and span processors, but no SDK ``Span`` object (a lock, bounded attributes, event and
    link lists, validation of our constant attributes, a second ``ReadableSpan`` at the end:
    ~30 us and a dozen objects per event, all of them garbage the collector walks). What the
    handler sees as its current span is a ``NonRecordingSpan`` with this span's context (the
    W3C context its publishes carry and its log lines show); when the span ends, ONE
    ``ReadableSpan`` goes to the processors' ``on_end`` (batch export, OTLP, files).
    Trade-off: code inside a handler cannot add attributes or events to the consumer span
    (none does), and processors get no ``on_start``."""

    __slots__ = ("attributes", "context", "kind", "name", "parent", "started", "status", "tracer")

    def __init__(
        self,
        tracer: SdkTracer,
        name: str,
        kind: SpanKind,
        span_context: SpanContext,
        *,
        parent: SpanContext | None,
        attributes: Any,
    ) -> None:
        self.tracer = tracer
        self.name = name
        self.kind = kind
        self.context = span_context
        self.parent = parent
        self.attributes = attributes
        self.status = _UNSET
        self.started = time_ns()

    def fail(self, error: BaseException) -> None:
        self.status = Status(StatusCode.ERROR, type(error).__qualname__)

    def end(self) -> None:
        tracer = self.tracer
        tracer.span_processor.on_end(
            ReadableSpan(
                self.name,
                self.context,
                self.parent,
                tracer.resource,
                self.attributes,
                kind=self.kind,
                status=self.status,
                start_time=self.started,
                end_time=time_ns(),
                instrumentation_scope=tracer._instrumentation_scope,
            )
        )


def _start(
    name: str, kind: SpanKind, attributes: dict[str, str], parent: context.Context | None
) -> tuple[_Span | None, context.Context]:
    """A span as the SDK tracer's ``start_span`` would make it (same sampling decision,
    ids, flags and trace state), and the context to attach while it runs. The span is None
    when nothing records it (no SDK provider, a disabled tracer, an unsampled trace)."""
    parent_context = trace.get_current_span(parent).get_span_context()
    tracer = _sdk_tracer()
    if tracer is None or not tracer._is_enabled():  # the API's no-op tracer does the same
        return None, trace.set_span_in_context(NonRecordingSpan(parent_context), parent)
    generator = tracer.id_generator
    if parent_context.is_valid:
        trace_id = parent_context.trace_id
        random_id = parent_context.trace_flags.random_trace_id
        parent_of: SpanContext | None = parent_context
    else:
        trace_id = generator.generate_trace_id()
        random_id = generator.is_trace_id_random()
        parent_of = None
    result = tracer.sampler.should_sample(parent, trace_id, name, kind, attributes)
    flags = _SAMPLED if result.decision.is_sampled() else _NOT_SAMPLED
    if random_id:
        flags = TraceFlags(flags | TraceFlags.RANDOM_TRACE_ID)
    span_context = SpanContext(
        trace_id,
        generator.generate_span_id(),
        is_remote=False,
        trace_flags=flags,
        trace_state=result.trace_state,
    )
    current = trace.set_span_in_context(NonRecordingSpan(span_context), parent)
    if not result.decision.is_recording():
        return None, current
    # the sampler's attributes are the span's (the SDK does the same): ours, read-only
    return _Span(
        tracer, name, kind, span_context, parent=parent_of, attributes=result.attributes
    ), current


@contextmanager
def consumer_span(topic: str, group: str | None, record: Any) -> Iterator[None]:
    """The span of one consumed record, unless that record's span is already current (the
    middleware opened it): per event, one span, whoever opens it."""
    if _consuming.get() is record:
        yield
        return
    slot = consumption(topic, group)
    span, current = _start(
        slot.span_name, SpanKind.CONSUMER, slot.span_attributes, _parent(record.headers)
    )
    token = context.attach(current)
    mark = _consuming.set(record)
    try:
        yield
    except BaseException as exc:
        if span is not None and not isinstance(exc, IgnoredException):
            span.fail(exc)
        raise
    finally:
        _consuming.reset(mark)
        context.detach(token)
        if span is not None:
            span.end()


class MessagingTelemetry:
    """The broker middleware: spans, counters, durations and lag for every subscriber and
    every publish of the broker (replaces FastStream's OTel and Prometheus middlewares)."""

    def __call__(self, msg: Any, /, *, context: ContextRepo) -> _Scope:
        return _Scope(msg, context=context)


class _Scope(BaseMiddleware[Any, Any]):
    __slots__ = ()

    async def consume_scope(self, call_next: Any, msg: StreamMessage[Any]) -> Any:
        raw = msg.raw_message
        consumer = getattr(msg, "consumer", None)
        group = getattr(consumer, "_group_id", None)
        if isinstance(raw, tuple | list):  # a batch: per-event spans are the EventBus'
            if not raw:
                return await call_next(msg)
            slot = consumption(raw[0].topic, group)
            count = len(raw)
            last = raw[-1]
            first_partition = raw[0].partition
            if first_partition != last.partition:  # records of several partitions
                ends = {r.partition: r.offset for r in raw}
                for partition, offset in ends.items():
                    slot.sample_lag(consumer, partition, offset)
            else:
                slot.sample_lag(consumer, last.partition, last.offset)
            return await self._measured(call_next, msg, slot, count)
        slot = consumption(raw.topic, group)
        slot.sample_lag(consumer, raw.partition, raw.offset)
        span, current = _start(
            slot.span_name, SpanKind.CONSUMER, slot.span_attributes, _parent(msg.headers)
        )
        token = context.attach(current)
        mark = _consuming.set(raw)
        try:
            return await self._measured(call_next, msg, slot, 1, span)
        finally:
            _consuming.reset(mark)
            context.detach(token)
            if span is not None:
                span.end()

    @staticmethod
    async def _measured(
        call_next: Any, msg: Any, slot: Consumption, count: int, span: _Span | None = None
    ) -> Any:
        started = time.perf_counter()
        try:
            result = await call_next(msg)
        except BaseException as exc:
            if isinstance(exc, IgnoredException):  # FastStream's ack/nack/skip signals
                slot.consumed.value += count
                _duration.record(time.perf_counter() - started, slot.attributes)
            else:
                attributes = slot.failed(exc, count)
                _duration.record(time.perf_counter() - started, attributes)
                if span is not None:
                    span.fail(exc)
            raise
        slot.consumed.value += count
        _duration.record(time.perf_counter() - started, slot.attributes)
        return result

    async def publish_scope(self, call_next: Any, cmd: Any) -> Any:
        slot = production(cmd.destination)
        count = len(cmd.batch_bodies) or 1
        span = None
        if _consuming.get() is not None:  # inside a handler: its consumer span is the parent
            _propagator.inject(cmd.headers)
        else:
            span, current = _start(slot.span_name, SpanKind.PRODUCER, slot.span_attributes, None)
            _propagator.inject(cmd.headers, current)
        try:
            result = await call_next(cmd)
        except BaseException as exc:
            slot.failed(exc, count)
            if span is not None:
                span.fail(exc)
            raise
        finally:
            if span is not None:
                span.end()
        slot.sent.value += count
        return result
