"""Monitoring's Prometheus/OTLP instruments (OpenTelemetry ``gen_ai.*`` names where they exist)."""

from __future__ import annotations

from opentelemetry import metrics

from services.monitoring.windows import Observation

_meter = metrics.get_meter("llmops.monitoring")

SECONDS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0]
TOKENS = [1, 4, 16, 64, 256, 1024, 4096, 16384]

request_duration = _meter.create_histogram(
    "gen_ai.server.request.duration",
    unit="s",
    description="Generation time per request.",
    explicit_bucket_boundaries_advisory=SECONDS,
)
time_to_first_token = _meter.create_histogram(
    "gen_ai.server.time_to_first_token",
    unit="s",
    description="Time to the first token.",
    explicit_bucket_boundaries_advisory=SECONDS,
)
token_usage = _meter.create_histogram(
    "gen_ai.client.token.usage",
    unit="{token}",
    description="Tokens per request by type.",
    explicit_bucket_boundaries_advisory=TOKENS,
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
feedback_rating = _meter.create_gauge(
    "llmops_feedback_rating_mean", description="Mean of the latest feedback ratings per model."
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
