"""Write the Grafana dashboards (JSON) with the panels of monitoring's built-in dashboards.

python compose/grafana/generate.py   # rewrites compose/grafana/dashboards/*.json
"""

from __future__ import annotations

import json
from pathlib import Path

OUT = Path(__file__).parent / "dashboards"
DS = {"type": "prometheus", "uid": "prometheus"}
RATE = "5m"

DASHBOARDS: dict[str, tuple[str, list[tuple[str, str, str]]]] = {
    "llmops-pipeline": (
        "llmops · Pipeline overview",
        [
            (
                "Events per topic",
                "sum by (messaging_destination_name) (llmops_topic_messages)",
                "short",
            ),
            (
                "Consumer lag",
                "sum by (messaging_consumer_group_name) (llmops_consumer_lag)",
                "short",
            ),
            ("Dead letters", "sum by (messaging_destination_name) (llmops_dlq_messages)", "short"),
            (
                "Handler rate (RED: rate)",
                f"sum by (job, topic, outcome) (rate(llmops_events_handled_total[{RATE}]))",
                "ops",
            ),
            (
                "Handler errors (RED: errors)",
                f"sum by (job, topic) "
                f'(rate(llmops_events_handled_total{{outcome="dead-lettered"}}[{RATE}])) '
                f"or sum by (job, topic) (rate(llmops_events_handled_total[{RATE}])) * 0",
                "ops",
            ),
            (
                "Handler p95 duration (RED: duration)",
                f"histogram_quantile(0.95, sum by (le, job, messaging_destination_name) "
                f"(rate(messaging_process_duration_seconds_bucket[{RATE}])))",
                "s",
            ),
        ],
    ),
    "llmops-serving": (
        "llmops · Serving",
        [
            (
                "Requests per second",
                f"sum by (gen_ai_request_model) (rate(llmops_inference_records_total[{RATE}]))",
                "reqps",
            ),
            (
                "Latency p50 / p95 / p99",
                "\n".join(
                    f"histogram_quantile({q}, sum by (le) "
                    f"(rate(gen_ai_server_request_duration_seconds_bucket[{RATE}])))"
                    for q in ("0.5", "0.95", "0.99")
                ),
                "s",
            ),
            (
                "Time to first token p50",
                f"histogram_quantile(0.5, sum by (le) "
                f"(rate(gen_ai_server_time_to_first_token_seconds_bucket[{RATE}])))",
                "s",
            ),
            (
                "Tokens per second (output)",
                f"sum by (gen_ai_request_model) "
                f'(rate(gen_ai_client_token_usage_sum{{gen_ai_token_type="output"}}[{RATE}]))',
                "short",
            ),
            (
                "Error rate",
                f"(sum(rate("
                f'llmops_inference_records_total{{outcome="error"}}[{RATE}])) or vector(0))'
                f" / sum(rate(llmops_inference_records_total[{RATE}]))",
                "percentunit",
            ),
            (
                "Records by model version",
                "sum by (gen_ai_request_model, gen_ai_response_model) "
                "(llmops_inference_records_total)",
                "short",
            ),
        ],
    ),
    "llmops-drift": (
        "llmops · Drift and alerts",
        [
            ("Drift score", "llmops_drift_score", "short"),
            ("Drift threshold", "llmops_drift_threshold", "short"),
            ("Alerts raised", "sum by (alertname, severity) (llmops_alerts_total)", "short"),
            (
                "Retraining decisions",
                "sum by (model, outcome) (llmops_retraining_decisions_total)",
                "short",
            ),
            (
                "Feedback rating (mean)",
                "avg by (gen_ai_request_model) (llmops_feedback_rating_mean)",
                "short",
            ),
        ],
    ),
    "llmops-lifecycle": (
        "llmops · Labeling and training",
        [
            ("Labels agreed", "sum by (dataset) (llmops_labels_total)", "short"),
            ("Training loss", "llmops_training_loss", "short"),
        ],
    ),
}


def panel(index: int, title: str, exprs: str, unit: str) -> dict:
    return {
        "id": index + 1,
        "type": "timeseries",
        "title": title,
        "datasource": DS,
        "gridPos": {"h": 8, "w": 12, "x": 12 * (index % 2), "y": 8 * (index // 2)},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "targets": [
            {"datasource": DS, "refId": chr(ord("A") + i), "expr": expr}
            for i, expr in enumerate(exprs.split("\n"))
        ],
    }


def dashboard(uid: str, title: str, panels: list[tuple[str, str, str]]) -> dict:
    return {
        "uid": uid,
        "title": title,
        "tags": ["llmops"],
        "schemaVersion": 39,
        "refresh": "10s",
        "time": {"from": "now-1h", "to": "now"},
        "panels": [panel(i, *p) for i, p in enumerate(panels)],
    }


if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    for uid, (title, panels) in DASHBOARDS.items():
        body = json.dumps(dashboard(uid, title, panels), indent=2) + "\n"
        (OUT / f"{uid}.json").write_text(body)
        print(f"wrote {OUT / f'{uid}.json'}")
