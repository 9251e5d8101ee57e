"""The evaluation report (JSON + an HTML page with plotly charts) and the model card.

The HTML loads plotly from the service (`/v1/registry/static/plotly.min.js`, the file plotly
ships), never from a CDN, so a report is small and works offline.
"""

from __future__ import annotations

import html
import json
from typing import Any

PLOTLY_PATH = "/v1/registry/static/plotly.min.js"


def _figures(report: dict[str, Any]) -> list[tuple[str, str]]:
    import plotly.graph_objects as go

    result = report["result"]
    figures: list[tuple[str, Any]] = []
    for attribute, entry in result["fairness"].items():
        names = list(entry["slices"])
        figures.append(
            (
                f"Accuracy per {attribute}",
                go.Figure(
                    go.Bar(
                        x=names,
                        y=[entry["slices"][n]["accuracy"] for n in names],
                        text=[f"n={entry['slices'][n]['n']}" for n in names],
                    )
                ).update_layout(yaxis_range=[0, 1]),
            )
        )
    conf = result["confusion"]
    figures.append(
        (
            "Confusion matrix (rows: expected, columns: predicted)",
            go.Figure(
                go.Heatmap(
                    z=conf["matrix"],
                    x=conf["labels"],
                    y=conf["labels"],
                    colorscale="Blues",
                    text=conf["matrix"],
                    texttemplate="%{text}",
                )
            ),
        )
    )
    if result.get("champion"):
        names = [k for k in result["scores"] if k in result["champion"]["scores"]]
        names = [k for k in names if k not in ("perplexity", "latency_p95_ms", "bleu", "chrf")]
        figures.append(
            (
                f"Candidate vs champion {result['champion']['version']}",
                go.Figure(
                    [
                        go.Bar(name="candidate", x=names, y=[result["scores"][k] for k in names]),
                        go.Bar(
                            name="champion",
                            x=names,
                            y=[result["champion"]["scores"][k] for k in names],
                        ),
                    ]
                ),
            )
        )
    return [(t, f.to_html(full_html=False, include_plotlyjs=False)) for t, f in figures]


def _table(rows: list[list[Any]], head: list[str]) -> str:
    cells = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_fmt(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><tr>{cells}</tr>{body}</table>"


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def render_html(report: dict[str, Any]) -> str:
    result = report["result"]
    title = f"{report['model_name']} {report['model_version']}"
    verdicts = _table(
        [[v["gate"], "pass" if v["passed"] else "FAIL", v["reason"]] for v in report["verdicts"]],
        ["gate", "verdict", "why"],
    )
    scores = _table(
        [[k, v, *_interval(result, k)] for k, v in result["scores"].items()],
        ["metric", "value", "95% low", "95% high"],
    )
    regression = _table(
        [
            [t["metric"], t["candidate"], t["champion"], t["p_value"], t["test"], t["worse"]]
            for t in result.get("regression", [])
        ],
        ["metric", "candidate", "champion", "p", "test", "significantly worse"],
    )
    charts = "".join(f"<h3>{html.escape(t)}</h3>{div}" for t, div in _figures(report))
    status = html.escape(report["status"])
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<script src="{PLOTLY_PATH}"></script>
<style>body{{font-family:sans-serif;margin:2em}}td,th{{border:1px solid #ccc;padding:4px}}
table{{border-collapse:collapse}}</style></head><body>
<h1>Evaluation of {html.escape(title)}</h1><p>Status: <b id="status">{status}</b>;
{result["examples"]} examples ({html.escape(", ".join(result["sources"]))}).</p>
<h2>Gates</h2>{verdicts}<h2>Scores</h2>{scores}<h2>Against the champion</h2>{regression}
<h2>Charts</h2>{charts}</body></html>"""


def _interval(result: dict[str, Any], metric: str) -> list[Any]:
    ci = result["intervals"].get(metric)
    return [ci["low"], ci["high"]] if ci else ["", ""]


def model_card(report: dict[str, Any], lineage: dict[str, Any]) -> str:
    """Markdown: lineage, metrics with intervals, fairness table, intended use and limits."""
    result = report["result"]
    lines = [
        f"# Model card: {report['model_name']} {report['model_version']}",
        "",
        f"Status: **{report['status']}** (evaluated {report['evaluated_at']}).",
        "",
        "## Lineage",
        *(f"- {k}: {v}" for k, v in lineage.items()),
        "",
        "## Metrics (95% bootstrap intervals)",
        "| metric | value | low | high |",
        "|---|---|---|---|",
        *(
            f"| {k} | {_fmt(v)} | {' | '.join(_fmt(x) for x in _interval(result, k))} |"
            for k, v in result["scores"].items()
        ),
        "",
        "## Fairness (accuracy per slice)",
        "| attribute | slice | n | accuracy |",
        "|---|---|---|---|",
    ]
    for attribute, entry in result["fairness"].items():
        for value, s in entry["slices"].items():
            lines.append(f"| {attribute} | {value} | {s['n']} | {_fmt(s['accuracy'])} |")
        lines.append(
            f"| {attribute} | largest gap | | {_fmt(entry['gap'])} "
            f"(DP diff {_fmt(entry['demographic_parity_difference'])}, "
            f"EO diff {_fmt(entry['equalized_odds_difference'])}) |"
        )
    if judge := result.get("judge"):
        lines += [
            "",
            "## LLM judge",
            f"- model {judge['model']}: kappa with human ratings {judge['kappa']} over "
            f"{judge['pairs']} pairs (needs {judge['min_kappa']}): "
            f"{'trusted' if judge['trusted'] else 'not used by any gate'}; "
            f"mean rating {judge['mean']}",
        ]
    lines += [
        "",
        "## Gates",
        *(
            f"- {v['gate']}: {'pass' if v['passed'] else 'FAIL'} — {v['reason']}"
            for v in report["verdicts"]
        ),
        "",
        "## Intended use",
        "Answers prompts of the task it was trained on (the dataset above), through the "
        "platform's gateway. Inputs and training data are anonymized; it must not be used to "
        "re-identify people or to decide about individuals without human review.",
        "",
        "## Limits",
        f"- Evaluated on {result['examples']} examples; intervals show how uncertain that is.",
        "- Slices smaller than the configured minimum are reported but not gated.",
        "- Exact match on the first generated line: a right answer in other words counts as "
        "wrong; ROUGE-L and chrF show partial credit.",
    ]
    return "\n".join(lines) + "\n"


def card_html(markdown: str) -> str:
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Model card</title></head>"
        f"<body><pre style='white-space:pre-wrap'>{html.escape(markdown)}</pre></body></html>"
    )


def report_json(report: dict[str, Any]) -> bytes:
    return json.dumps(report, indent=2, default=str).encode()
