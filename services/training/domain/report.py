"""The loss curve of a run: one self-contained HTML page (plotly's bundled JS, no CDN)."""

from __future__ import annotations

from typing import Any


def curves(history: list[dict[str, Any]]) -> dict[str, list[tuple[int, float]]]:
    """Training and validation loss by step, from a trainer's log history."""
    out: dict[str, list[tuple[int, float]]] = {"train loss": [], "validation loss": []}
    for entry in history:
        step = int(entry.get("step", 0))
        if "loss" in entry:
            out["train loss"].append((step, float(entry["loss"])))
        if "eval_loss" in entry:
            out["validation loss"].append((step, float(entry["eval_loss"])))
    return out


def loss_curve_html(history: list[dict[str, Any]], title: str) -> bytes:
    import plotly.graph_objects as go

    figure = go.Figure()
    for name, points in curves(history).items():
        if points:
            steps, losses = zip(*points, strict=True)
            figure.add_trace(go.Scatter(x=steps, y=losses, mode="lines+markers", name=name))
    figure.update_layout(
        title=title, xaxis_title="step", yaxis_title="loss", template="plotly_white"
    )
    html = figure.to_html(include_plotlyjs=True, full_html=True, div_id="loss-curve")
    return html.encode()
