"""The built-in dashboards render with data in a real browser (Debian chromium, headless),
after the page's login form took an API key (reads need role viewer or above): the cookie
it sets opens every dashboard of the browser context.

Screenshots land in docs/monitoring/ (the pictures the docs show)."""

from __future__ import annotations

import shutil

import pytest

from tests.monitoring.conftest import ADMIN_KEY, Loaded
from tests.support.stack import ROOT

pytestmark = pytest.mark.e2e
CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
EXPECTED = {  # dashboard -> charts that must hold data after the loaded run
    "pipeline": {"Events per topic", "Consumer lag (latest)"},
    "serving": {
        "Requests per second",
        "Latency p95 (ms)",
        "Time to first token p50 (ms)",
        "Tokens per second",
    },
    "models": {"Versions: trained, evaluated, promoted, rolled back", "Retraining decisions"},
    "drift": {"embeddings — mmd p-value", "prompt_tokens — jensen_shannon ", "Alerts"},
    "labeling": {"Labels agreed (cumulative)", "Agreement"},
    "training": {"Training loss"},
}


@pytest.fixture(scope="module")
def browser():
    if not shutil.which(CHROMIUM):
        pytest.fail("chromium is missing: apt-get install -y chromium (see docs/install.md)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.set_default_timeout(120_000)  # 2 shared cores: a 4.8 MB script parses slowly
        yield context
        context.close()
        browser.close()


@pytest.mark.parametrize("name", list(EXPECTED))
def test_dashboard_renders_charts_with_data(loaded: Loaded, browser, name: str) -> None:
    page = browser.new_page()
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    url = f"{loaded.url}/dashboards/{name}"
    response = page.goto(url, wait_until="domcontentloaded")
    assert response is not None
    if response.status == 401:  # the first page of the context: the login form
        assert page.query_selector('form[action="/login"]') is not None
        page.fill("#key", ADMIN_KEY)
        page.click("button[type=submit]")
        page.wait_for_url(url)
    page.wait_for_selector("body[data-loaded=true]")
    charts = page.eval_on_selector_all(
        ".chart",
        "els => els.map(e => [e.dataset.title, Number(e.dataset.points),"
        " e.querySelectorAll('svg.main-svg').length])",
    )
    with_data = {title for title, points, svgs in charts if points > 0 and svgs > 0}
    missing = EXPECTED[name] - with_data
    assert not missing, f"charts without data on {name}: {missing} (got {charts})"
    assert all(url.startswith(loaded.url) for url in requests), "a resource from outside"
    out = ROOT / "docs" / "monitoring"
    out.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(out / f"{name}.png"), full_page=True)
    page.close()
