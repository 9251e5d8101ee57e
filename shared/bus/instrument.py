"""Messaging telemetry of every service, cheap by design.

The broker ``make_broker`` builds (``TracedKafkaBroker``) and the EventBus share this
module, so every service gets the same spans and metrics without code of its own. No
FastStream middleware: each subscriber's handlers are ``TracedCall``s (the telemetry around
FastStream's ``HandlerItem.call``, where a middleware's ``consume_scope`` would run) and the
broker's ``publish``/``publish_batch`` go through ``traced_send``; a middleware costs an
object, an async context and a ``partial`` per message and per publish before any telemetry
runs. OpenTelemetry semantic-convention names (``messaging.*``, ``error.type``):

Spans: ONE span per consumed event, ``<topic> process`` (kind CONSUMER), child of the
producer's context from the record's ``traceparent`` header. A publish made while an event
is processed creates no span of its own: the current consumer span's context goes into the
message's headers, so the next consumer's span is its child and the chain holds across
processes. A publish outside a handler (HTTP routes, the outbox relay, clients) gets one
``<topic> publish`` span (kind PRODUCER); the outbox relay's drain is ONE such span linked
to its rows' contexts, the rows keeping the context they were stored with
(``traced_send_records``). Batch subscribers: the EventBus opens the span of
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
scrape, OTLP export). The duration histogram is pre-bound too (``Durations``): after an
attribute set's first measurement, values go straight into the SDK's aggregation of each
reader (``duration_view``, installed by ``setup_telemetry``). Attribute mappings are built
once per slot, never per message.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from time import time_ns
from typing import TYPE_CHECKING, Any

from aiokafka import TopicPartition
from faststream._internal.endpoint.subscriber.call_item import CallsCollection, HandlerItem
from faststream.exceptions import IgnoredException
from opentelemetry import context, metrics, trace
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics._internal.aggregation import (
    _ExplicitBucketHistogramAggregation as _SdkHistogram,
)
from opentelemetry.sdk.metrics.export import AggregationTemporality
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace import Tracer as SdkTracer
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

if TYPE_CHECKING:
    from faststream.message import StreamMessage

SYSTEM = "kafka"
LAG_SAMPLE_S = 1.0  # most one lag reading per partition and second

METER = "llmops.bus"
_meter = metrics.get_meter(METER)
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
DURATION = "messaging.process.duration"


class _Value:
    """A reusable measurement: the histogram aggregation reads ``value`` alone when it
    samples no exemplar."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0


class Durations:
    """The duration histogram of one attribute set, pre-bound.

    The first measurement goes through the SDK's ``Histogram.record`` (a Measurement, the
    attributes validated, copied and hashed per reader: ~5 us). When the meter provider
    has ``duration_view()`` (``setup_telemetry`` installs it), the aggregation each reader
    made for this attribute set registers here, and later measurements go straight into
    those aggregations (``aggregate``: the SDK's own bucket, sum, min and max update, under
    its lock): one bisect and a few additions. Without the view, every measurement takes
    the SDK's way. An aggregation a DELTA reader collects is let go (the SDK may drop it
    after the collection): the set's next measurement takes the SDK's way again, to every
    reader, and binds what the SDK then holds. Bound measurements sample no exemplars."""

    __slots__ = ("attributes", "bound", "histogram", "measurement")

    def __init__(self, histogram: Any, attributes: dict[str, str]) -> None:
        self.histogram = histogram
        self.attributes = attributes
        self.bound: list[_BoundHistogram] = []
        self.measurement = _Value()

    def record(self, seconds: float) -> None:
        bound = self.bound  # replaced, never changed in place: a collector may unbind
        if not bound:
            self.histogram.record(seconds, self.attributes)
            return
        measurement = self.measurement
        measurement.value = seconds
        for aggregation in bound:
            _SdkHistogram.aggregate(aggregation, measurement, False)  # type: ignore[arg-type]


class DurationHistogram:
    """``messaging.process.duration`` of one meter: a ``Durations`` per attribute set."""

    def __init__(self, meter_name: str, provider: metrics.MeterProvider | None = None) -> None:
        self.scope = meter_name
        self.histogram = metrics.get_meter(meter_name, meter_provider=provider).create_histogram(
            DURATION,
            unit="s",
            description="Handler time of one delivery (a message, or a fetched batch).",
        )

    def of(self, attributes: dict[str, str]) -> Durations:
        key = (self.scope, frozenset(attributes.items()))
        found = _durations.get(key)
        if found is None:
            found = _durations[key] = Durations(self.histogram, attributes)
        return found


# every Durations by meter and attribute set: where a bound aggregation finds its own
_durations: dict[tuple[str, frozenset[tuple[str, str]]], Durations] = {}


class _BoundHistogram(_SdkHistogram):
    """The SDK's explicit-bucket aggregation of one attribute set and reader, which binds
    itself to that set's ``Durations`` on the measurement the SDK hands it."""

    def aggregate(self, measurement: Any, should_sample_exemplar: bool = True) -> None:
        super().aggregate(measurement, should_sample_exemplar)
        scope = measurement.instrument.instrumentation_scope.name
        durations = _durations.get((scope, frozenset((measurement.attributes or {}).items())))
        if durations is not None and self not in durations.bound:
            durations.bound = [*durations.bound, self]

    def collect(self, collection_aggregation_temporality: Any, collection_start_nano: int) -> Any:
        point = super().collect(collection_aggregation_temporality, collection_start_nano)
        if collection_aggregation_temporality is AggregationTemporality.DELTA:
            for durations in list(_durations.values()):
                if self in durations.bound:  # every reader's again on the SDK's next record
                    durations.bound = []
        return point


class BoundDurationAggregation(ExplicitBucketHistogramAggregation):
    """The explicit-bucket histogram aggregation (the SDK's default for a histogram, same
    boundaries), made of ``_BoundHistogram``s: see ``Durations``."""

    def _create_aggregation(self, *args: Any, **kwargs: Any) -> Any:
        aggregation = super()._create_aggregation(*args, **kwargs)
        aggregation.__class__ = _BoundHistogram  # built by the SDK, bound by us
        return aggregation


def duration_view() -> View:
    """The view a meter provider needs for pre-bound durations (``setup_telemetry``)."""
    return View(instrument_name=DURATION, aggregation=BoundDurationAggregation())


_duration = DurationHistogram(METER)
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

    __slots__ = (
        "attributes",
        "consumed",
        "durations",
        "group",
        "next_lag",
        "span_attributes",
        "span_name",
    )

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
        self.durations = _duration.of(self.attributes)
        self.next_lag: dict[int, float] = {}

    def failed(self, error: BaseException, count: int) -> Durations:
        """Count a failed delivery; returns the durations with its ``error.type``."""
        kind = type(error).__qualname__
        attributes = {**self.attributes, "error.type": kind}
        _consumed.slot((*self._key(), kind), attributes).value += count
        return _duration.of(attributes)

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
    traceparent = carrier.get("traceparent")
    if "tracestate" not in carrier and isinstance(traceparent, str):
        match = _TRACEPARENT_00.fullmatch(traceparent)
        if match is not None:  # the platform's own: what the propagator makes of it, sooner
            trace_id, span_id = int(match[1], 16), int(match[2], 16)
            if not trace_id or not span_id:
                return context.Context()
            remote = SpanContext(
                trace_id, span_id, is_remote=True, trace_flags=TraceFlags(int(match[3], 16))
            )
            return trace.set_span_in_context(NonRecordingSpan(remote), context.Context())
    return _propagator.extract(carrier)  # other versions, whitespace, a tracestate


# a W3C traceparent of version 00 as every platform producer writes it
_TRACEPARENT_00 = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")


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

    __slots__ = (
        "attributes",
        "context",
        "kind",
        "links",
        "name",
        "parent",
        "started",
        "status",
        "tracer",
    )

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
        self.links: Sequence[Link] = ()
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
                links=self.links,
                status=self.status,
                start_time=self.started,
                end_time=time_ns(),
                instrumentation_scope=tracer._instrumentation_scope,
            )
        )


def _start(
    name: str,
    kind: SpanKind,
    attributes: dict[str, Any],
    parent: context.Context | None,
    links: Sequence[Link] = (),
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
    result = tracer.sampler.should_sample(parent, trace_id, name, kind, attributes, links)
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
    span = _Span(tracer, name, kind, span_context, parent=parent_of, attributes=result.attributes)
    span.links = links
    return span, current


@contextmanager
def consumer_span(topic: str, group: str | None, record: Any) -> Iterator[None]:
    """The span of one consumed record, unless that record's span is already current (the
    subscriber's traced call opened it): per event, one span, whoever opens it."""
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


# -- the subscriber side: a traced handler call, outside FastStream's middleware chain ------
_ITEM_SLOTS = tuple(
    name for klass in HandlerItem.__mro__ for name in getattr(klass, "__slots__", ())
)


class TracedCall(HandlerItem[Any]):
    """One handler of a subscriber, called with its span, counters, duration and lag.

    FastStream calls ``HandlerItem.call(message, ...)`` once per delivery, inside its
    acknowledgement and logging scopes, with the parsed message: where a broker middleware's
    ``consume_scope`` ran, without a middleware object, an async context and a ``partial``
    per message and per publish. A single record gets its CONSUMER span here; a fetched
    batch is measured and counted here, and the EventBus opens the span of each event."""

    __slots__ = ("group", "last_slot", "last_topic")

    group: str | None
    last_topic: str
    last_slot: Consumption

    @classmethod
    def of(cls, item: HandlerItem[Any], group: str | None) -> TracedCall:
        traced = cls.__new__(cls)
        for name in _ITEM_SLOTS:  # the same handler, filter, parser and decoder
            if hasattr(item, name):
                setattr(traced, name, getattr(item, name))
        traced.group = group
        traced.last_topic = ""
        return traced

    def _setup(self, **kwargs: Any) -> None:
        HandlerItem._setup(self, **kwargs)
        dependant = self.dependant
        if dependant is not None and not getattr(dependant, "flat_params", True):
            # the handler takes no body (``message: Message`` only, as the EventBus'
            # consumers): FastStream would still decode every record (for a batch, a
            # ``KafkaMessage`` and a JSON parse per record) to hand it a value it ignores
            self.decoder = _body_as_is

    def _consumption(self, topic: str) -> Consumption:
        if topic != self.last_topic:  # a subscriber reads one topic, mostly
            self.last_slot = consumption(topic, self.group)
            self.last_topic = topic
        return self.last_slot

    async def call(self, /, message: StreamMessage[Any], _extra_middlewares: Iterable[Any]) -> Any:
        raw = message.raw_message
        consumer = getattr(message, "consumer", None)
        if isinstance(raw, tuple | list):  # a batch: per-event spans are the EventBus'
            if not raw:
                return await HandlerItem.call(self, message, _extra_middlewares)
            slot = self._consumption(raw[0].topic)
            last = raw[-1]
            if raw[0].partition != last.partition:  # records of several partitions
                for partition, offset in {r.partition: r.offset for r in raw}.items():
                    slot.sample_lag(consumer, partition, offset)
            else:
                slot.sample_lag(consumer, last.partition, last.offset)
            return await self._measured(message, _extra_middlewares, slot, len(raw), None)
        slot = self._consumption(raw.topic)
        slot.sample_lag(consumer, raw.partition, raw.offset)
        span, current = _start(
            slot.span_name, SpanKind.CONSUMER, slot.span_attributes, _parent(message.headers)
        )
        token = context.attach(current)
        mark = _consuming.set(raw)
        try:
            return await self._measured(message, _extra_middlewares, slot, 1, span)
        finally:
            _consuming.reset(mark)
            context.detach(token)
            if span is not None:
                span.end()

    async def _measured(
        self,
        message: StreamMessage[Any],
        extra: Iterable[Any],
        slot: Consumption,
        count: int,
        span: _Span | None,
    ) -> Any:
        started = time.perf_counter()
        try:
            result = await HandlerItem.call(self, message, extra)
        except BaseException as exc:
            if isinstance(exc, IgnoredException):  # FastStream's ack/nack/skip signals
                slot.consumed.value += count
                slot.durations.record(time.perf_counter() - started)
            else:
                slot.failed(exc, count).record(time.perf_counter() - started)
                if span is not None:
                    span.fail(exc)
            raise
        slot.consumed.value += count
        slot.durations.record(time.perf_counter() - started)
        return result


async def _body_as_is(message: StreamMessage[Any]) -> Any:
    """The decoder of a handler that takes no body: the raw body (bytes, or a batch's list
    of bytes), not decoded."""
    return message.body


class TracedCalls(CallsCollection[Any]):
    """A subscriber's handlers, each added as a ``TracedCall``."""

    group: str | None

    def add_call(self, call: HandlerItem[Any]) -> None:
        super().add_call(call if isinstance(call, TracedCall) else TracedCall.of(call, self.group))


def instrument_subscriber(subscriber: Any) -> Any:
    """Trace every handler of ``subscriber`` (a FastStream Kafka subscriber), those it has
    and those decorated later. Its handler collection becomes a ``TracedCalls`` in place
    (the subscriber's specification shares that object). Returns the subscriber."""
    calls = subscriber.calls
    if not isinstance(calls, TracedCalls):
        calls.__class__ = TracedCalls
        calls.group = getattr(subscriber, "group_id", None)
        calls.data[:] = [TracedCall.of(c, calls.group) for c in calls.data]
    return subscriber


# -- the producer side ---------------------------------------------------------------------
def inject_trace_context(headers: dict[str, Any]) -> None:
    """Put the current span's W3C context (``traceparent``, ``tracestate``) in ``headers``:
    all a consumer's span reads (``_parent``), without the global propagator's composite
    (baggage included) per message."""
    _propagator.inject(headers)


async def traced_send(topic: str, count: int, headers: dict[str, Any], send: Awaitable[Any]) -> Any:
    """Await ``send`` (a publish of ``count`` messages to ``topic`` with ``headers``, not
    started yet) with the sent counters; the trace context goes into ``headers`` first: the
    consumer span's inside a handler (no span of its own), else that of a PRODUCER span
    opened here."""
    slot = production(topic)
    span = None
    if _consuming.get() is not None:  # inside a handler: its consumer span is the parent
        _propagator.inject(headers)
    else:
        span, current = _start(slot.span_name, SpanKind.PRODUCER, slot.span_attributes, None)
        _propagator.inject(headers, current)
    try:
        result = await send
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


async def traced_send_records(
    records: Sequence[tuple[str, Any, Any, dict[str, str]]], send: Awaitable[Any]
) -> Any:
    """Await ``send`` (the publish of ``records``: (topic, key, value, headers), encoded
    already, e.g. outbox rows) with the sent counters and ONE ``<topic> publish`` span (kind
    PRODUCER; ``outbox publish`` when the records go to several topics) with a link to the
    context each record's headers carry. The headers are sent as they are: a record keeps
    the context of the span that made it (the handler that emitted an outbox row), so its
    consumer's span is that span's child, as for a publish made inside a handler."""
    topics: dict[str, int] = {}
    links = []
    for topic, _key, _value, headers in records:
        topics[topic] = topics.get(topic, 0) + 1
        parent = _parent(headers)
        if parent is not None:
            remote = trace.get_current_span(parent).get_span_context()
            if remote.is_valid:
                links.append(Link(remote))
    span = None
    if records:
        one = next(iter(topics)) if len(topics) == 1 else None
        slot = production(one) if one is not None else None
        attributes: dict[str, Any] = (
            dict(slot.span_attributes)
            if slot is not None
            else {"messaging.system": SYSTEM, "messaging.operation.type": "send"}
        )
        attributes["messaging.batch.message_count"] = len(records)
        span, _current = _start(
            slot.span_name if slot is not None else "outbox publish",
            SpanKind.PRODUCER,
            attributes,
            context.Context(),  # a root: the records' own contexts are its links
            links,
        )
    try:
        result = await send
    except BaseException as exc:
        for topic, count in topics.items():
            production(topic).failed(exc, count)
        if span is not None:
            span.fail(exc)
        raise
    finally:
        if span is not None:
            span.end()
    for topic, count in topics.items():
        production(topic).sent.value += count
    return result
