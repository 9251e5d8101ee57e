"""The web UI in headless Chromium (Debian's, driven by playwright), keyboard only.

Sign in, label with number keys / Enter / S / U, label a span by selecting text, adjudicate
a conflict, and see progress and agreement move on the project page. Screenshots of each
main page go to docs/labeling/.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import uuid
from pathlib import Path

import httpx
import pytest

from shared.client import PlatformClient
from shared.settings import ServiceSettings
from tests.labeling.support import ADMIN, PROJECT, TICKETS, anonymized
from tests.support.stack import ROOT, ServiceProcess, wait_until

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not shutil.which("chromium"), reason="needs Debian's chromium"),
]
SHOTS = ROOT / "docs" / "labeling"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def sign_in(page, base: str, key: str) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{base}/logout")
    page.wait_for_selector("#key:focus")  # the key field has the focus (autofocus)
    page.keyboard.type(key)
    page.keyboard.press("Enter")
    page.wait_for_url(f"{base}/ui")


def answer(page, keys: str, expect: str) -> None:  # type: ignore[no-untyped-def]
    for key in keys:
        page.keyboard.press(key)
    page.wait_for_function(
        "t => document.getElementById('status').textContent.includes(t)", arg=expect
    )


def test_keyboard_only_labeling_adjudication_and_progress(kafka: str, data_dir: Path) -> None:
    from playwright.sync_api import sync_playwright

    dataset = f"ui-{uuid.uuid4().hex[:6]}"
    service = ServiceProcess(
        "services.labeling",
        {
            "LLMOPS_KAFKA_BOOTSTRAP": kafka,
            "LLMOPS_DATA_DIR": str(data_dir),
            "LLMOPS_ADMIN_KEY": ADMIN,
            "LLMOPS_LOG_LEVEL": "WARNING",
        },
        data_dir / "labeling.log",
    ).start()
    base = f"http://127.0.0.1:{service.port}"
    admin = {"authorization": f"Bearer {ADMIN}"}
    try:

        async def feed() -> None:
            settings = ServiceSettings(kafka_bootstrap=kafka)
            async with PlatformClient(settings, producer_name="test") as client:
                await client.publish(anonymized(dataset, TICKETS[:3]))

        asyncio.run(feed())
        http = httpx.Client(base_url=base, timeout=30, headers=admin)
        http.post(
            "/api/projects",
            content=json.dumps(
                {
                    **PROJECT,
                    "datasets": [dataset],
                    "rules": [{"label": "shipping", "keywords": ["parcel"], "confidence": 0.6}],
                }
            ),
        ).raise_for_status()
        http.post(
            "/api/projects",
            content=json.dumps(
                {
                    "name": "entities",
                    "task": "spans",
                    "labels": ["ITEM"],
                    "datasets": [dataset],
                    "instruction": "Mark the items.",
                }
            ),
        ).raise_for_status()
        wait_until(lambda: http.get("/api/projects/tickets").json()["tasks"] == 3, timeout=60)
        ann = http.post("/api/annotators", json={"name": "ann"}).json()["key"]
        bob = http.post("/api/annotators", json={"name": "bob"}).json()["key"]
        SHOTS.mkdir(parents=True, exist_ok=True)

        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
            page = browser.new_page(viewport={"width": 1100, "height": 760})
            page.goto(f"{base}/login")
            page.screenshot(path=SHOTS / "login.png")
            sign_in(page, base, ann)
            assert page.locator("#who").inner_text() == "ann"
            page.goto(f"{base}/ui/projects/tickets/label")
            page.wait_for_selector("#choices button")
            # the most uncertain first: tasks without a suggestion before the 0.6 one
            assert "Suggestion" not in page.locator("#suggestion").inner_text()
            page.screenshot(path=SHOTS / "label.png")
            answer(page, "1", "")  # pick billing
            answer(page, ["Enter"], "saved billing")
            answer(page, ["2", "Enter"], "saved shipping")
            answer(page, ["u"], "undone")  # back to the same task
            answer(page, ["3", "Enter"], "saved account")
            page.wait_for_function(
                "document.getElementById('suggestion').textContent.includes('60%')"
            )
            answer(page, ["s"], "skipped")
            page.wait_for_selector("#empty:not([hidden])")

            sign_in(page, base, bob)
            page.goto(f"{base}/ui/projects/tickets/label")
            page.wait_for_selector("#choices button")
            answer(page, ["1", "Enter"], "saved billing")  # agrees with ann: final
            answer(page, ["1", "Enter"], "conflict")  # ann said account: conflict
            answer(page, ["2", "Enter"], "saved shipping")

            # span labeling: select text (as shift+arrows or a drag would), press 1, Enter
            page.goto(f"{base}/ui/projects/entities/label")
            page.wait_for_selector("#choices button")
            page.evaluate("""() => {
                const node = document.getElementById('text').firstChild;
                const at = node.textContent.indexOf(' ') + 1;
                const range = document.createRange();
                range.setStart(node, at); range.setEnd(node, at + 4);
                const sel = window.getSelection(); sel.removeAllRanges(); sel.addRange(range);
            }""")
            answer(page, ["1"], "span ITEM added")
            page.screenshot(path=SHOTS / "spans.png")
            answer(page, ["Enter"], "saved")

            sign_in(page, base, ADMIN)
            page.goto(f"{base}/ui/projects/tickets")
            before = page.locator("#progress").inner_text()
            assert page.locator("#conflicts").inner_text() == "1"
            page.keyboard.press("a")  # to the adjudication screen
            page.wait_for_selector("#votes li")
            assert page.locator("#votes li").count() == 2
            page.screenshot(path=SHOTS / "adjudicate.png")
            answer(page, ["2", "Enter"], "decided")
            page.wait_for_selector("#empty:not([hidden])")
            page.goto(f"{base}/ui/projects/tickets")
            page.wait_for_selector("#chart-annotators .main-svg")
            after = page.locator("#progress").inner_text()
            assert (before, after) == ("33%", "67%")
            assert page.locator("#conflicts").inner_text() == "0"
            assert page.locator("#kappa").inner_text() not in ("", "\u2013")
            page.screenshot(path=SHOTS / "project.png", full_page=True)
            page.goto(f"{base}/ui")
            page.screenshot(path=SHOTS / "projects.png")
            browser.close()

        spans = http.get("/api/projects/entities/export").text.splitlines()
        labeled = [json.loads(line) for line in spans if json.loads(line)["answers"]]
        span = labeled[0]["answers"][0]["label"][0]
        text = dict((f"rid-{sid}", t) for sid, t, _c in TICKETS)[labeled[0]["record_id"]]
        assert span["label"] == "ITEM"
        assert span["end"] - span["start"] == 4
        assert text[span["start"] : span["end"]] == text.split(" ", 1)[1][:4]
    finally:
        service.stop()
