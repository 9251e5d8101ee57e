"""Debian's Prometheus scrapes the running monitoring service; every PromQL query of every
Grafana panel in compose/grafana/dashboards returns data."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time

import httpx
import pytest

from services.monitoring.traffic import inference_batch
from shared.client import PlatformClient
from shared.settings import ServiceSettings
from tests.monitoring.conftest import AUTH, Loaded
from tests.support.stack import ROOT, free_port, wait_until

pytestmark = pytest.mark.integration
DASHBOARDS = ROOT / "compose" / "grafana" / "dashboards"


def _queries() -> list[tuple[str, str, str]]:
    found = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        for panel in json.loads(path.read_text())["panels"]:
            found += [(path.stem, panel["title"], t["expr"]) for t in panel["targets"]]
    return found


@pytest.fixture(scope="module")
def prometheus(loaded: Loaded, tmp_path_factory: pytest.TempPathFactory):
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("prometheus is missing: apt-get install -y prometheus (see docs/install.md)")
    work = tmp_path_factory.mktemp("prometheus")
    config = work / "prometheus.yml"
    target = loaded.url.removeprefix("http://")
    config.write_text(
        "global: {scrape_interval: 1s}\n"
        "scrape_configs:\n  - job_name: monitoring\n"
        f"    static_configs: [{{targets: ['{target}']}}]\n"
    )
    port = free_port()
    log = (work / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={work / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _up(url), timeout=60, interval=0.5)
        yield url
    finally:
        proc.terminate()
        proc.wait(20)


def _up(url: str) -> bool:
    try:
        result = httpx.get(f"{url}/api/v1/query", params={"query": "up"}, timeout=2).json()
    except httpx.HTTPError:
        return False
    return any(r["value"][1] == "1" for r in result.get("data", {}).get("result", []))


async def _more_traffic(bootstrap: str) -> None:
    async with PlatformClient(ServiceSettings(kafka_bootstrap=bootstrap), "test") as client:
        for event in inference_batch("tickets-clf", "v1", 10, drifted=False, seed=99):
            await client.publish(event)


def test_every_grafana_panel_query_returns_data(loaded: Loaded, prometheus: str) -> None:
    before = httpx.get(f"{loaded.url}/api/status", headers=AUTH).json()["windows"][
        "tickets-clf@v1"
    ]["records"]
    asyncio.run(_more_traffic(loaded.bootstrap))  # so that rates over the window are not flat
    wait_until(
        lambda: (
            httpx.get(f"{loaded.url}/api/status", headers=AUTH).json()["windows"]["tickets-clf@v1"][
                "records"
            ]
            >= before + 10
        ),
        timeout=60,
    )
    wait_until(
        lambda: httpx.get(f"{loaded.url}/api/status", headers=AUTH).json()["feedback"], timeout=60
    )
    time.sleep(3)  # absence window: three more scrapes so that rate() sees the increase
    queries = _queries()
    assert len(queries) >= 15
    empty = []
    for dashboard, title, expr in queries:
        body = httpx.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=10).json()
        assert body["status"] == "success", f"{dashboard}/{title}: {body}"
        values = [r["value"][1] for r in body["data"]["result"]]
        print(f"{dashboard:<18} {title:<36} {values[:3]}")
        if not values:
            empty.append(f"{dashboard}/{title}: {expr}")
    assert not empty, "panels without data:\n" + "\n".join(empty)
