"""The bus' consumer spans, made without the SDK's Span class, against the real SDK: the
same parent/child chain, sampling decisions, flags and status as ``Tracer.start_span``
would give, and the span's context is what a publish from the handler carries."""

from __future__ import annotations

import pytest
from aiokafka import ConsumerRecord
from opentelemetry import propagate, trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from shared.bus.instrument import consumer_span

TRACE = "0af7651916cd43dd8448eb211c80319c"
PARENT = "b7ad6b7169203331"


@pytest.fixture(scope="module")
def exporter() -> InMemorySpanExporter:
    exporter = InMemorySpanExporter()
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):  # the global provider can be set only once
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


def record(topic: str, flags: str | None) -> ConsumerRecord[bytes, bytes]:
    headers = [("traceparent", f"00-{TRACE}-{PARENT}-{flags}".encode())] if flags else []
    return ConsumerRecord(topic, 0, 7, 0, 0, None, b"{}", None, 2, -1, headers)


def carried() -> str:
    """The traceparent a publish made now would carry."""
    headers: dict[str, str] = {}
    propagate.inject(headers)
    return headers.get("traceparent", "")


def finished(exporter: InMemorySpanExporter, topic: str) -> list:  # type: ignore[type-arg]
    return [s for s in exporter.get_finished_spans() if s.name == f"{topic} process"]


def test_a_sampled_event_gets_one_child_span_whose_context_its_publishes_carry(
    exporter: InMemorySpanExporter,
) -> None:
    with consumer_span("spans.sampled", "group-a", record("spans.sampled", "01")):
        inside = carried()
    (span,) = finished(exporter, "spans.sampled")
    ctx = span.get_span_context()
    assert span.kind is SpanKind.CONSUMER
    assert f"{ctx.trace_id:032x}" == TRACE
    assert span.parent is not None and f"{span.parent.span_id:016x}" == PARENT
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
    assert span.start_time is not None and span.end_time is not None
    assert span.start_time <= span.end_time
    assert span.resource.attributes.get("telemetry.sdk.name") == "opentelemetry"
    assert span.instrumentation_scope is not None
    assert span.instrumentation_scope.name == "llmops.bus"


def test_an_unsampled_trace_records_nothing_and_passes_its_decision_on(
    exporter: InMemorySpanExporter,
) -> None:
    with consumer_span("spans.unsampled", None, record("spans.unsampled", "00")):
        inside = carried()
    assert finished(exporter, "spans.unsampled") == []
    version, trace_id, span_id, flags = inside.split("-")
    assert (version, trace_id, flags) == ("00", TRACE, "00")
    assert span_id != PARENT  # a span of its own in the trace, just not recorded


def test_an_event_without_traceparent_starts_a_trace_and_a_failure_marks_the_span(
    exporter: InMemorySpanExporter,
) -> None:
    with (
        pytest.raises(ValueError, match="bad"),
        consumer_span("spans.root", None, record("spans.root", None)),
    ):
        raise ValueError("bad")
    (span,) = finished(exporter, "spans.root")
    assert span.parent is None
    assert f"{span.get_span_context().trace_id:032x}" != TRACE
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "ValueError"
