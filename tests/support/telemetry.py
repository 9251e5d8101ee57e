"""Spans recorded in the test process, for tests that assert on traces."""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


def in_memory_spans() -> InMemorySpanExporter:
    """An exporter that receives every span the process records from now on: added to the
    global SDK tracer provider, which is installed first if there is none (the global
    provider can be set only once per process, so each caller adds its own exporter)."""
    exporter = InMemorySpanExporter()
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter
