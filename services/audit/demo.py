"""Demo stage: every privileged action of the run is in the chained audit trail."""

from __future__ import annotations

import time
from typing import Any

import httpx

from services.audit.plugin import PLUGIN


def run(ctx: Any) -> None:
    base = f"http://127.0.0.1:{PLUGIN.processes[0].resolved_port}"
    headers = {"X-API-Key": ctx.admin_key}
    deadline = time.monotonic() + 30
    # earlier stages' audit events are still flowing in: wait until the trail stops growing
    seen = -1
    while time.monotonic() < deadline:
        count = httpx.get(f"{base}/v1/audit/verify", headers=headers, timeout=10).json()["entries"]
        if count == seen and count > 0:
            break
        seen = count
        time.sleep(1.0)
    result = httpx.get(f"{base}/v1/audit/verify", headers=headers, timeout=10).json()
    if not result["ok"]:
        raise RuntimeError(f"audit trail broken: {result}")
    entries = httpx.get(
        f"{base}/v1/audit", params={"limit": 8}, headers=headers, timeout=10
    ).json()["entries"]
    ctx.say(f"audit trail intact: {result['entries']} entries, head {result['head'][:16]}…")
    for entry in entries:
        verdict = "allowed" if entry["allowed"] else "DENIED"
        ctx.say(f"  #{entry['seq']} {entry['action']} by {entry['actor']} ({verdict})")
    ctx.say("`llmops audit list` / `llmops audit verify` read it")
