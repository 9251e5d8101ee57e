"""What keeps telemetry cheap, against the real SDK: the bus' consumer spans, made without
the SDK's Span class, keep the parent/child chain, sampling decisions, flags and status that
``Tracer.start_span`` would give; a service process tunes its GC once (build_runtime)."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from aiokafka import ConsumerRecord
from opentelemetry import propagate, trace
from opentelemetry.sdk.metrics import Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from shared.bus.instrument import DURATION, DurationHistogram, _parent, consumer_span, duration_view

TRACE = "0af7651916cd43dd8448eb211c80319c"
PARENT = "b7ad6b7169203331"


def record(topic: str, flags: str | None) -> ConsumerRecord[bytes, bytes]:
    headers = [("traceparent", f"00-{TRACE}-{PARENT}-{flags}".encode())] if flags else []
    return ConsumerRecord(topic, 0, 7, 0, 0, None, b"{}", None, 2, -1, headers)


def carried() -> str:
    """The traceparent a publish made now would carry."""
    headers: dict[str, str] = {}
    propagate.inject(headers)
    return headers.get("traceparent", "")


def finished(span_exporter: InMemorySpanExporter, topic: str) -> list:  # type: ignore[type-arg]
    return [s for s in span_exporter.get_finished_spans() if s.name == f"{topic} process"]


def test_a_sampled_event_gets_one_child_span_whose_context_its_publishes_carry(
    span_exporter: InMemorySpanExporter,
) -> None:
    with consumer_span("spans.sampled", "group-a", record("spans.sampled", "01")):
        inside = carried()
    (span,) = finished(span_exporter, "spans.sampled")
    ctx = span.get_span_context()
    assert span.kind is SpanKind.CONSUMER
    assert f"{ctx.trace_id:032x}" == TRACE
    assert span.parent is not None
    assert f"{span.parent.span_id:016x}" == PARENT
    assert span.parent.is_remote
    assert inside == f"00-{TRACE}-{ctx.span_id:016x}-01"
    assert ctx.span_id != int(PARENT, 16)
    assert dict(span.attributes or {}) == {
        "messaging.system": "kafka",
        "messaging.destination.name": "spans.sampled",
        "messaging.consumer.group.name": "group-a",
        "messaging.operation.type": "process",
    }
    assert span.status.status_code is StatusCode.UNSET
    assert span.start_time is not None
    assert span.end_time is not None
    assert span.start_time <= span.end_time
    assert span.resource.attributes.get("telemetry.sdk.name") == "opentelemetry"
    assert span.instrumentation_scope is not None
    assert span.instrumentation_scope.name == "llmops.bus"


def test_an_unsampled_trace_records_nothing_and_passes_its_decision_on(
    span_exporter: InMemorySpanExporter,
) -> None:
    with consumer_span("spans.unsampled", None, record("spans.unsampled", "00")):
        inside = carried()
    assert finished(span_exporter, "spans.unsampled") == []
    version, trace_id, span_id, flags = inside.split("-")
    assert (version, trace_id, flags) == ("00", TRACE, "00")
    assert span_id != PARENT  # a span of its own in the trace, just not recorded


def test_an_event_without_traceparent_starts_a_trace_and_a_failure_marks_the_span(
    span_exporter: InMemorySpanExporter,
) -> None:
    with (
        pytest.raises(ValueError, match="bad"),
        consumer_span("spans.root", None, record("spans.root", None)),
    ):
        raise ValueError("bad")
    (span,) = finished(span_exporter, "spans.root")
    assert span.parent is None
    assert f"{span.get_span_context().trace_id:032x}" != TRACE
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "ValueError"


def test_a_service_process_freezes_its_start_up_heap_once_and_zero_keeps_pythons_gc() -> None:
    """In a fresh interpreter (the GC is process-wide state): what build_runtime applies."""
    script = (
        "import gc\n"
        "from shared.runtime import tune_gc\n"
        "before = gc.get_threshold()\n"
        "assert not tune_gc(0) and gc.get_threshold() == before and gc.get_freeze_count() == 0\n"
        "assert tune_gc(12345)\n"
        "assert gc.get_threshold() == (12345, *before[1:]), gc.get_threshold()\n"
        "frozen = gc.get_freeze_count()\n"
        "assert frozen > 10000, frozen\n"
        "assert not tune_gc(500) and gc.get_threshold()[0] == 12345\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr


def _points(
    reader: InMemoryMetricReader,
) -> list[tuple[dict[str, Any], int, float, tuple[int, ...]]]:
    data = reader.get_metrics_data()
    if data is None:
        return []
    return sorted(
        (
            (dict(p.attributes or {}), p.count, round(p.sum, 9), tuple(p.bucket_counts))
            for rm in data.resource_metrics
            for sm in rm.scope_metrics
            for m in sm.metrics
            if m.name == DURATION
            for p in m.data.data_points
        ),
        key=lambda point: sorted(point[0].items()),
    )


def test_bound_durations_export_what_the_sdks_histogram_would_cumulative_and_delta() -> None:
    """The pre-bound duration histogram against the SDK's own, same values, on a private
    meter provider: cumulative and DELTA readers, two attribute sets, collections between
    the measurements (a DELTA collection lets the aggregation go; the next measurement binds
    what the SDK holds then)."""
    delta = {Histogram: AggregationTemporality.DELTA}
    bound_readers = [InMemoryMetricReader(), InMemoryMetricReader(preferred_temporality=delta)]
    plain_readers = [InMemoryMetricReader(), InMemoryMetricReader(preferred_temporality=delta)]
    bound_provider = MeterProvider(metric_readers=bound_readers, views=[duration_view()])
    plain_provider = MeterProvider(metric_readers=plain_readers)
    bound = DurationHistogram("test.bound", bound_provider)
    plain = plain_provider.get_meter("test.plain").create_histogram(DURATION, unit="s")
    sets = [{"messaging.destination.name": "a"}, {"messaging.destination.name": "b"}]
    values = [0.0004, 0.003, 0.02, 0.7, 12.0, 0.0, 0.05]
    for round_ in range(3):
        for i, seconds in enumerate(values * (round_ + 1)):
            attributes = sets[i % 2]
            bound.of(attributes).record(seconds)
            plain.record(seconds, attributes)
        for ours, theirs in zip(bound_readers, plain_readers, strict=True):
            assert _points(ours) == _points(theirs)
    # a set's measurement after a DELTA collection binds every reader's aggregation again
    for attributes in sets:
        bound.of(attributes).record(0.01)
        assert len(bound.of(attributes).bound) == len(bound_readers)
    bound_provider.shutdown()
    plain_provider.shutdown()


@pytest.mark.parametrize(
    "headers",
    [
        {"traceparent": f"00-{TRACE}-{PARENT}-01"},
        {"traceparent": f"00-{TRACE}-{PARENT}-00"},
        {"traceparent": f"00-{TRACE}-{PARENT}-09"},
        {"traceparent": f"00-{'0' * 32}-{PARENT}-01"},
        {"traceparent": f"00-{TRACE}-{'0' * 16}-01"},
        {"traceparent": f"00-{TRACE.upper()}-{PARENT}-01"},
        {"traceparent": f" 00-{TRACE}-{PARENT}-01 "},
        {"traceparent": f"00-{TRACE}-{PARENT}-01-extra"},
        {"traceparent": f"01-{TRACE}-{PARENT}-01-extra"},
        {"traceparent": f"00-{TRACE}-{PARENT}-01", "tracestate": "vendor=value"},
        {"traceparent": "garbage"},
        [("traceparent", f"00-{TRACE}-{PARENT}-01".encode())],
    ],
)
def test_the_parent_context_is_the_w3c_propagators(headers: Any) -> None:
    """The bus reads the platform's own traceparent without the propagator's regular
    expression and Context copies: the same parent span context, whatever the header."""
    carrier = dict(
        (k, v.decode() if isinstance(v, bytes) else v)
        for k, v in (headers.items() if isinstance(headers, dict) else headers)
    )
    expected = trace.get_current_span(TraceContextTextMapPropagator().extract(carrier))
    parent = _parent(headers)
    got = trace.get_current_span(parent) if parent is not None else trace.INVALID_SPAN
    assert got.get_span_context() == expected.get_span_context()
    assert got.get_span_context().trace_state == expected.get_span_context().trace_state
