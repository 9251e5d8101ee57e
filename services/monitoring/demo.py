"""Demo stage: a drifted traffic burst, the drift it causes, the alert and the retraining
decision; then the dashboard URL.

With serving up (a `serving` result, naming the gateway's URL) the burst goes
through the gateway with the official openai client, and its records reach monitoring through
anonymization like any traffic. Otherwise (or if that path is too slow) the stage publishes the
anonymized inference records itself, shaped as anonymization emits them.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from services.monitoring.traffic import inference_batch, prompts
from shared.client import PlatformClient

DEMO_MODEL = "demo-drift"


def _monitoring_url() -> str:
    from services.monitoring.app import port
    from services.monitoring.config import MonitoringSettings

    cfg = MonitoringSettings(service_name="demo", log_format="text")
    return f"http://{cfg.host}:{port(cfg)}"


class _Api:
    """Monitoring's JSON API with the demo's key (its reads need role viewer or above)."""

    def __init__(self, url: str, key: str) -> None:
        self.url, self.key = url, key

    def get(self, path: str) -> Any:
        response = httpx.get(f"{self.url}{path}", headers={"X-API-Key": self.key}, timeout=10)
        return response.raise_for_status().json()


def _window_size(api: _Api) -> tuple[int, dict[str, Any]]:
    status = api.get("/api/status")
    return int(status.get("window_size") or 100), status


def _decisions(api: _Api, model: str) -> list[dict[str, Any]]:
    rows = api.get("/api/decisions?limit=50")
    return [r for r in rows if r["model_name"] == model]


def _wait_decision(
    api: _Api, model: str, before: int, timeout_s: float, say: Any = None
) -> dict[str, Any] | None:
    started = time.monotonic()
    next_note = started + 30
    while time.monotonic() < started + timeout_s:
        rows = _decisions(api, model)
        if len(rows) > before:
            return rows[0]
        if say is not None and time.monotonic() > next_note:
            say(f"  {time.monotonic() - started:.0f}s: waiting for the anonymized burst")
            next_note += 30
        time.sleep(1)
    return None


def _through_gateway(ctx: Any, base: str, model: str, n: int) -> None:
    from openai import OpenAI

    client = OpenAI(base_url=f"{base}/v1", api_key=ctx.admin_key, max_retries=1, timeout=30)
    traffic = [p for p, _ in prompts(n, drifted=False, seed=11)]
    traffic += [p for p, _ in prompts(n, drifted=True, seed=12)]

    def ask(prompt: str) -> None:
        client.completions.create(model=model, prompt=prompt, max_tokens=24)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(ask, traffic[:n]))  # the reference first, then the burst
        list(pool.map(ask, traffic[n:]))
    ctx.say(f"sent {n} ordinary and {n} drifted requests through the gateway (openai client)")


async def _publish(ctx: Any, n: int) -> None:
    quiet = inference_batch(DEMO_MODEL, "v1", n, drifted=False, seed=21)
    burst = inference_batch(DEMO_MODEL, "v1", n, drifted=True, seed=22)
    async with PlatformClient(ctx.settings, producer_name="demo") as client:
        for event in [*quiet, *burst]:
            await client.publish(event)
    ctx.say(f"published {n} ordinary and {n} drifted anonymized inference records")


def run(ctx: Any) -> None:
    url = _monitoring_url()
    api = _Api(url, ctx.admin_key)
    n, _status = _window_size(api)
    serving = ctx.results.get("serving") or {}
    served = serving.get("model")
    decision = None
    if served:
        before = len(_decisions(api, served))
        try:
            _through_gateway(ctx, serving["gateway_url"], served, n)
            # every request is anonymized (Presidio) before monitoring sees it: minutes for
            # two windows of traffic on a busy 2-core machine
            decision = _wait_decision(api, served, before, 300, ctx.say)
        except Exception as exc:  # show the rest of the loop even if serving is struggling
            ctx.say(f"gateway burst failed ({type(exc).__name__}: {exc}); publishing instead")
    if decision is None:
        before = len(_decisions(api, DEMO_MODEL))
        asyncio.run(_publish(ctx, n))
        decision = _wait_decision(api, DEMO_MODEL, before, 60)
    if decision is None:
        raise RuntimeError("monitoring made no retraining decision within 60 s")
    drifted = [
        r
        for r in api.get("/api/drift?limit=20")
        if r["drifted"] and r["model_name"] == decision["model_name"]
    ]
    for row in drifted[:7]:
        p = f", p={row['p_value']:.2g}" if row["p_value"] is not None else ""
        ctx.say(
            f"drift: {row['feature']} {row['method']} {row['score']:.3f} "
            f"(threshold {row['threshold']}{p})"
        )
    alerts = [a for a in api.get("/api/alerts?limit=5") if a["name"] == "drift"]
    if alerts:
        ctx.say(f"alert: {alerts[0]['summary']}")
    ctx.say(f"retraining decision #{decision['id']}: {decision['outcome']} — {decision['reason']}")
    ctx.say(
        f"dashboards: {url}/dashboards/drift (also pipeline, serving, models, labeling, training)"
    )
    ctx.results["monitoring"] = {"decision": decision["outcome"], "url": url}
