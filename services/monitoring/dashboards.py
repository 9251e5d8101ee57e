"""The built-in dashboards as Plotly figure specs (plain dicts), built from monitoring's state.

The page polls ``/api/dashboards/<name>`` and hands each figure to ``Plotly.react``; the
figures are computed here so that the browser only draws.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from services.monitoring.adapters.store import (
    AlertRow,
    DecisionRow,
    DriftRow,
    LabelingRow,
    SqlRepository,
    TimelineRow,
)
from services.monitoring.service import MonitoringService
from services.monitoring.windows import summarize

Figure = dict[str, Any]
TITLES = {
    "pipeline": "Pipeline overview",
    "serving": "Serving",
    "models": "Model versions",
    "drift": "Drift",
    "labeling": "Labeling",
    "training": "Training",
}


def _fig(title: str, data: list[dict[str, Any]], **layout: Any) -> Figure:
    return {
        "title": title,
        "data": data,
        "layout": {
            "title": {"text": title},
            "margin": {"t": 40, "l": 50, "r": 20, "b": 40},
            "height": 300,
            "yaxis": {"automargin": True},
            **layout,
        },
    }


def pipeline(
    service: MonitoringService, repo: SqlRepository, history: list[dict[str, Any]]
) -> list[Figure]:
    times = [h["at"] for h in history]
    topics = sorted({t for h in history for t in h["messages"]})
    messages = [
        {
            "type": "scatter",
            "mode": "lines",
            "name": t.removeprefix("llmops."),
            "x": times,
            "y": [h["messages"].get(t, 0) for h in history],
        }
        for t in topics
    ]
    last = history[-1] if history else {"lag": {}, "dlq": {}}
    groups = sorted(last["lag"])
    return [
        _fig("Events per topic", messages),
        _fig(
            "Consumer lag (latest)",
            [{"type": "bar", "x": groups, "y": [sum(last["lag"][g].values()) for g in groups]}],
        ),
        _fig(
            "Dead letters over time",
            [
                {
                    "type": "scatter",
                    "mode": "lines",
                    "name": "DLQ",
                    "x": times,
                    "y": [h["dlq_total"] for h in history],
                }
            ],
        ),
    ]


def serving(
    service: MonitoringService, repo: SqlRepository, history: list[dict[str, Any]]
) -> list[Figure]:
    latency: list[dict[str, Any]] = []
    ttft: list[dict[str, Any]] = []
    tps: list[dict[str, Any]] = []
    rps: list[dict[str, Any]] = []
    with service.lock:
        windows = {k: list(w.history) for k, w in service.windows.items()}
    for (model, version), obs in sorted(windows.items()):
        name = f"{model}@{version}"
        chunks = [obs[i : i + 20] for i in range(0, len(obs), 20)]
        stats = [summarize(c) for c in chunks if c]
        x = [c[-1].at.isoformat() for c in chunks if c]
        for series, key in (
            (latency, "latency_p95_ms"),
            (ttft, "ttft_p50_ms"),
            (tps, "tokens_per_s"),
            (rps, "rps"),
        ):
            series.append(
                {
                    "type": "scatter",
                    "mode": "lines+markers",
                    "name": name,
                    "x": x,
                    "y": [s[key] for s in stats],
                }
            )
    return [
        _fig("Requests per second", rps),
        _fig("Latency p95 (ms)", latency),
        _fig("Time to first token p50 (ms)", ttft),
        _fig("Tokens per second", tps),
    ]


def models(
    service: MonitoringService, repo: SqlRepository, history: list[dict[str, Any]]
) -> list[Figure]:
    rows: list[TimelineRow] = list(reversed(repo.recent(TimelineRow, 300)))
    kinds = sorted({r.kind for r in rows})
    data = [
        {
            "type": "scatter",
            "mode": "markers",
            "name": kind,
            "marker": {"size": 12},
            "x": [r.at.isoformat() for r in rows if r.kind == kind],
            "y": [f"{r.model_name}@{r.model_version}" for r in rows if r.kind == kind],
            "text": [r.detail for r in rows if r.kind == kind],
        }
        for kind in kinds
    ]
    decisions: list[DecisionRow] = list(reversed(repo.recent(DecisionRow, 300)))
    outcomes = sorted({d.outcome for d in decisions})
    data_d = [
        {
            "type": "scatter",
            "mode": "markers",
            "name": o,
            "marker": {"size": 10},
            "x": [d.at.isoformat() for d in decisions if d.outcome == o],
            "y": [d.model_name for d in decisions if d.outcome == o],
            "text": [d.reason for d in decisions if d.outcome == o],
        }
        for o in outcomes
    ]
    return [
        _fig("Versions: trained, evaluated, promoted, rolled back", data),
        _fig("Retraining decisions", data_d),
    ]


def drift(
    service: MonitoringService, repo: SqlRepository, history: list[dict[str, Any]]
) -> list[Figure]:
    rows: list[DriftRow] = list(reversed(repo.recent(DriftRow, 600)))
    figures = []
    for feature, method in sorted({(r.feature, r.method) for r in rows}):
        mine = [r for r in rows if (r.feature, r.method) == (feature, method)]
        value = "p_value" if method in ("ks", "mmd") else "score"
        data: list[dict[str, Any]] = [
            {
                "type": "scatter",
                "mode": "lines+markers",
                "name": f"{m}@{v}",
                "x": [r.at.isoformat() for r in mine if (r.model_name, r.model_version) == (m, v)],
                "y": [getattr(r, value) for r in mine if (r.model_name, r.model_version) == (m, v)],
            }
            for m, v in sorted({(r.model_name, r.model_version) for r in mine})
        ]
        data.append(
            {
                "type": "scatter",
                "mode": "lines",
                "name": "threshold",
                "line": {"dash": "dash", "color": "red"},
                "x": [mine[0].at.isoformat(), mine[-1].at.isoformat()],
                "y": [mine[-1].threshold] * 2,
            }
        )
        figures.append(
            _fig(f"{feature} — {method} {'p-value' if value == 'p_value' else ''}", data)
        )
    alerts: list[AlertRow] = list(reversed(repo.recent(AlertRow, 300)))
    names = sorted({a.name for a in alerts})
    figures.append(
        _fig(
            "Alerts",
            [
                {
                    "type": "scatter",
                    "mode": "markers",
                    "name": n,
                    "x": [a.at.isoformat() for a in alerts if a.name == n],
                    "y": [n for a in alerts if a.name == n],
                    "text": [a.summary for a in alerts if a.name == n],
                }
                for n in names
            ],
        )
    )
    return figures


def labeling(
    service: MonitoringService, repo: SqlRepository, history: list[dict[str, Any]]
) -> list[Figure]:
    rows: list[LabelingRow] = list(reversed(repo.recent(LabelingRow, 1000)))
    data_c, data_a = [], []
    for dataset in sorted({r.dataset for r in rows}):
        mine = [r for r in rows if r.dataset == dataset]
        total, cumulative = 0, []
        for r in mine:
            total += r.count
            cumulative.append(total)
        x = [r.at.isoformat() for r in mine]
        data_c.append(
            {"type": "scatter", "mode": "lines", "name": dataset, "x": x, "y": cumulative}
        )
        data_a.append(
            {
                "type": "scatter",
                "mode": "lines+markers",
                "name": dataset,
                "x": x,
                "y": [r.agreement for r in mine],
            }
        )
    return [_fig("Labels agreed (cumulative)", data_c), _fig("Agreement", data_a)]


def training(
    service: MonitoringService, repo: SqlRepository, history: list[dict[str, Any]]
) -> list[Figure]:
    points = repo.training_points()
    data = []
    for run in dict.fromkeys(p.run_id for p in points):
        mine = [p for p in points if p.run_id == run and "loss" in p.metrics]
        data.append(
            {
                "type": "scatter",
                "mode": "lines",
                "name": run[:8],
                "x": [p.step for p in mine],
                "y": [p.metrics["loss"] for p in mine],
            }
        )
    return [_fig("Training loss", data, xaxis={"title": {"text": "step"}})]


BUILDERS: dict[str, Callable[..., list[Figure]]] = {
    "pipeline": pipeline,
    "serving": serving,
    "models": models,
    "drift": drift,
    "labeling": labeling,
    "training": training,
}
