"""Monitoring's Prometheus/OTLP instruments (OpenTelemetry ``gen_ai.*`` names where they exist)."""

from __future__ import annotations

from opentelemetry import metrics

from services.monitoring.windows import Observation

_meter = metrics.get_meter("llmops.monitoring")

request_duration = _meter.create_histogram(
    "gen_ai.server.request.duration", unit="s", description="Generation time per request."
)
time_to_first_token = _meter.create_histogram(
    "gen_ai.server.time_to_first_token", unit="s", description="Time to the first token."
)
token_usage = _meter.create_histogram(
    "gen_ai.client.token.usage", unit="{token}", description="Tokens per request by type."
)
inference_records = _meter.create_counter(
    "llmops_inference_records", description="Anonymized inference records seen, by outcome."
)
drift_score = _meter.create_gauge(
    "llmops_drift_score", description="Latest drift score per model, feature and method."
)
drift_threshold = _meter.create_gauge(
    "llmops_drift_threshold", description="Threshold of each drift score."
)
alerts = _meter.create_counter("llmops_alerts", description="Alerts raised, by name.")
decisions = _meter.create_counter(
    "llmops_retraining_decisions", description="Retraining policy decisions, by outcome."
)
feedback_rating = _meter.create_histogram(
    "llmops_feedback_rating", description="User feedback ratings."
)
topic_messages = _meter.create_gauge(
    "llmops_topic_messages", description="Messages held by each topic (end - start offsets)."
)
consumer_lag = _meter.create_gauge(
    "llmops_consumer_lag", description="Messages behind per consumer group and topic."
)
dlq_messages = _meter.create_gauge(
    "llmops_dlq_messages", description="Dead letters held by each DLQ topic."
)
training_loss = _meter.create_gauge("llmops_training_loss", description="Latest training loss.")
labels_total = _meter.create_counter("llmops_labels", description="Agreed labels seen, by dataset.")


def observe(obs: Observation) -> None:
    attrs = {"gen_ai.request.model": obs.model, "gen_ai.response.model": obs.version}
    inference_records.add(1, {**attrs, "outcome": "error" if obs.error else "ok"})
    if obs.error:
        return
    request_duration.record(obs.latency_ms / 1000, attrs)
    if obs.ttft_ms is not None:
        time_to_first_token.record(obs.ttft_ms / 1000, attrs)
    token_usage.record(obs.prompt_tokens, {**attrs, "gen_ai.token.type": "input"})
    token_usage.record(obs.completion_tokens, {**attrs, "gen_ai.token.type": "output"})
