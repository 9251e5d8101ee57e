"""`make demo`'s job, end to end: the whole embedded stack, every stage that exists."""

from __future__ import annotations

import base64
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from services.ingestion import demo as ingestion_demo
from shared.authority import derive_key, service_principal
from shared.plugins import discover
from shared.stack.supervisor import pid_alive
from tests.support.stack import default_embedded_log, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.mark.timeout(2400)  # the whole loop, vLLM loads and a training run included, on 2 cores
def test_demo_runs_every_stage_and_stops_cleanly(tmp_path: Path) -> None:
    """`llmops demo` runs the whole loop, every stage a plug-in names, and leaves nothing up.

    The admin key comes from LLMOPS_ADMIN_KEY, as the README's configuration allows (this used
    to fail: stages read a key file that is only written when the key is generated). The demo
    and the CLI with the key from either place, generated or from the variable, are covered
    without a second whole-loop run by tests/integration/test_admin_key.py.
    """
    data_dir = tmp_path / "demo"
    env = {
        **default_embedded_log(dict(os.environ)),  # the durable log, as a user gets it
        "LLMOPS_DATA_DIR": str(data_dir),
        "LLMOPS_EMBEDDED_BOOTSTRAP": f"127.0.0.1:{free_port()}",
        "LLMOPS_EMBEDDED_EPHEMERAL_BOOTSTRAP": f"127.0.0.1:{free_port()}",
        "LLMOPS_KAFKA_BOOTSTRAP": "",
        "LLMOPS_ADMIN_KEY": "llm-from-the-environment-0123456789",
        "COLUMNS": "200",
        "LLMOPS_REQUIRE_AUTHORITY": "true",  # as for a user: every command must be signed
    }
    args = ["demo"]
    try:
        result = subprocess.run(
            [sys.executable, "-m", "shared.cli.main", *args],
            capture_output=True,
            text=True,
            timeout=2300,
            env=env,
            check=False,
        )
    finally:  # whatever happened, leave no stack behind to hold the ports of the next test
        left_running = (data_dir / "stack.json").exists()
        if left_running:
            subprocess.run(
                [sys.executable, "-m", "shared.cli.main", "down", "--force"],
                env=env,
                capture_output=True,
                timeout=300,
                check=False,
            )
    output = result.stdout + result.stderr
    logs = data_dir / "logs"
    if result.returncode != 0 and logs.exists():
        for log in sorted(logs.glob("*.log")):
            output += f"\n--- {log.name}\n" + "\n".join(
                log.read_text(errors="replace").splitlines()[-30:]
            )
    assert result.returncode == 0, output[-12000:]
    assert "demo complete" in output
    refused = [  # every command the stages and services issued was signed and allowed
        line
        for log in sorted(logs.glob("*.log"))
        for line in log.read_text(errors="replace").splitlines()
        if "dead-lettered" in line and "unauthorized" in line
    ]
    assert not refused, refused[:5]
    stages = [
        "bus", "ingestion", "anonymization", "labeling", "training", "evaluation", "serving",
        "monitoring", "audit",
    ]  # fmt: skip
    for stage in stages:
        assert f": {stage}" in output, f"stage {stage} did not run:\n{output[-4000:]}"
    assert not left_running
    # the loop closed: a trained model was evaluated, and the whole run is one audited chain
    assert re.search(r"model llmops-tiny@\S+: ", output), output[-4000:]
    outcome = re.search(r"outcome: (promoted|canary|awaiting-approval|blocked) ", output)
    assert outcome, output[-4000:]
    if outcome.group(1) == "promoted":  # and then served: the workers hot-swapped to it
        evaluated = re.search(r"evaluating llmops-tiny (\S+) against", output)
        served = re.search(r"completion: \d+ tokens in \d+ ms from version (\S+)", output)
        assert evaluated, output[-4000:]
        assert served, output[-4000:]
        assert served.group(1) == evaluated.group(1)
    # a given key is used as is: nothing generated, and no secret in the output
    assert not (data_dir / "admin.key").exists()
    assert "llm-from-the-environment" not in output
    leaks = planted_secrets_in(data_dir, env["LLMOPS_ADMIN_KEY"])
    assert not leaks, leaks[:20]
    state_pids = [int(pid) for pid in re.findall(r"supervisor pid (\d+)", output)]
    assert state_pids
    assert not any(pid_alive(pid) for pid in state_pids)


# What the demo plants: the people of its support tickets and of the anonymization stage's
# records (names, e-mails, a phone, a card, an IBAN, an IP, an address), and the admin key.
PLANTED = [
    *ingestion_demo.NAMES,
    *(name.lower().replace(" ", ".") + "@example.com" for name in ingestion_demo.NAMES),
    "Grace Whitaker", "grace.whitaker@example.com", "+44 20 7946 0321", "4111 1111 1111 1111",
    "DE89 3704 0044 0532 0130 00", "Omar Haddad", "203.0.113.77", "742 Evergreen Terrace",
]  # fmt: skip


def planted_secrets_in(data_dir: Path, admin_key: str) -> list[str]:
    """Every file the demo left in the data dir, searched for the planted personal data and
    for the admin key and the signing keys derived from it: only the inbox (the demo's own
    input) may hold the personal data, and no file any secret but the key files themselves.

    SQLite databases are searched as bytes, their WAL files included (deleted rows are zeroed:
    secure_delete), and so is every artifact (JSONL, model files, reports)."""
    secrets = {"admin key": admin_key.encode()}
    for principal in ["admin", *(service_principal(plugin.name) for plugin in discover())]:
        seed = derive_key(admin_key, principal).private_bytes_raw()
        secrets[f"signing key of {principal}"] = seed
        secrets[f"signing key of {principal} (base64)"] = base64.urlsafe_b64encode(seed).rstrip(
            b"="
        )
    people = {value: value.encode() for value in PLANTED}
    inbox = data_dir / "inbox"
    files = [path for path in sorted(data_dir.rglob("*")) if path.is_file()]
    assert any(path.suffix == ".db" for path in files), "no database to search"
    found = []
    control = False
    for path in files:
        blob = path.read_bytes()
        if inbox in path.parents:
            control = control or any(v in blob for v in people.values())
            continue
        found += [f"{name} in {path}" for name, v in secrets.items() if v in blob]
        found += [f"{value!r} in {path}" for value, v in people.items() if v in blob]
    assert control, "the scan found nothing even in the demo's input: it searches wrongly"
    return found
