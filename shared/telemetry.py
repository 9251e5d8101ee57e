"""Tracing, metrics and JSON logs for every process.

Traces: OTLP/HTTP when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set, a JSON-lines file when
``LLMOPS_SPANS_FILE`` is set; with neither, no span is recorded at all (the OpenTelemetry
API's no-op tracer still carries the incoming trace context on to the events a service
emits, so a trace crosses a service that does not export). Sampling: the SDK's default,
``parentbased_always_on``; the standard ``OTEL_TRACES_SAMPLER`` /
``OTEL_TRACES_SAMPLER_ARG`` variables change it (unsampled spans record nothing).
Metrics: always on the Prometheus registry (served on ``/metrics``), and over OTLP when
configured; exemplars are off unless ``OTEL_METRICS_EXEMPLAR_FILTER`` asks for them (the
Prometheus text format does not carry them, and they cost every measurement in a span).
Logs: one JSON object a line, with the trace and span ids of the current span.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.environment_variables import OTEL_METRICS_EXEMPLAR_FILTER
from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter, MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

_STANDARD_ATTRS = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message"}
_configured = False


class JsonLinesSpanExporter(SpanExporter):
    """Appends each finished span as one JSON object per line (thread-safe)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = []
        for span in spans:
            ctx = span.get_span_context()
            parent = span.parent
            lines.append(
                json.dumps(
                    {
                        "name": span.name,
                        "service": span.resource.attributes.get("service.name"),
                        "trace_id": f"{ctx.trace_id:032x}" if ctx else None,
                        "span_id": f"{ctx.span_id:016x}" if ctx else None,
                        "parent_span_id": f"{parent.span_id:016x}" if parent else None,
                        "kind": span.kind.name,
                        "start": span.start_time,
                        "end": span.end_time,
                        "attributes": {k: _jsonable(v) for k, v in (span.attributes or {}).items()},
                        "status": span.status.status_code.name,
                        # a relay drain's producer span is a root linked to the emitters'
                        "links": [
                            {
                                "trace_id": f"{link.context.trace_id:032x}",
                                "span_id": f"{link.context.span_id:016x}",
                            }
                            for link in span.links or ()
                        ],
                    },
                    default=str,
                )
            )
        with self._lock, self.path.open("a") as out:
            out.write("\n".join(lines) + "\n")
        return SpanExportResult.SUCCESS


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    return [_jsonable(v) for v in value] if isinstance(value, tuple) else value


class JsonFormatter(logging.Formatter):
    """One JSON object a line, with trace/span ids and the record's extra fields."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        ctx = trace.get_current_span().get_span_context()
        if ctx.is_valid:
            out["trace_id"] = f"{ctx.trace_id:032x}"
            out["span_id"] = f"{ctx.span_id:016x}"
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def setup_logging(service: str, level: str = "INFO", fmt: str = "json") -> None:
    handler = logging.StreamHandler(sys.stdout)
    if fmt == "json":
        handler.setFormatter(JsonFormatter(service))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("aiokafka", "kafka", "httpx", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def setup_telemetry(
    service: str,
    *,
    otlp_endpoint: str | None = None,
    spans_file: Path | None = None,
    log_level: str = "INFO",
    log_format: str = "json",
) -> None:
    """Install the global tracer and meter providers once per process."""
    global _configured
    setup_logging(service, log_level, log_format)
    if _configured:
        return
    _configured = True
    resource = Resource.create({"service.name": service, "service.namespace": "llmops"})
    tracer_provider = TracerProvider(resource=resource)
    readers: list[MetricReader] = [PrometheusMetricReader()]
    if otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        endpoint = otlp_endpoint.rstrip("/")
        tracer_provider.add_span_processor(
            BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces"))
        )
        readers.append(
            PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=f"{endpoint}/v1/metrics"))
        )
    if spans_file:
        # batched like OTLP (the handler never waits for a file write), flushed often enough
        # for a test or an operator tailing the file
        tracer_provider.add_span_processor(
            BatchSpanProcessor(JsonLinesSpanExporter(spans_file), schedule_delay_millis=200)
        )
    if otlp_endpoint or spans_file:  # else spans would be recorded for nobody
        trace.set_tracer_provider(tracer_provider)
    from shared.bus.instrument import duration_view  # the bus imports much: only when used

    exemplars = None if os.environ.get(OTEL_METRICS_EXEMPLAR_FILTER) else AlwaysOffExemplarFilter()
    metrics.set_meter_provider(
        MeterProvider(
            resource=resource,
            metric_readers=readers,
            exemplar_filter=exemplars,
            views=[duration_view()],  # the bus' pre-bound duration histogram
        )
    )


def shutdown_telemetry() -> None:
    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):
        provider.shutdown()
    meter_provider = metrics.get_meter_provider()
    if isinstance(meter_provider, MeterProvider):
        meter_provider.shutdown()


def prometheus_payload() -> tuple[bytes, str]:
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
