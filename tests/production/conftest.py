from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_DIR = ROOT / "compose"


@pytest.fixture(scope="session")
def compose_config() -> dict[str, Any]:
    """compose/compose.yaml as Debian's docker-compose resolves it with .env.example."""
    binary = shutil.which("docker-compose")
    if binary is None:
        subprocess.run(
            "(apt-get update -qq && apt-get install -y -qq docker-compose) >/dev/null 2>&1",
            shell=True,
            check=False,
            timeout=600,
        )
        binary = shutil.which("docker-compose")
    if binary is None and os.environ.get("CI"):
        pytest.fail("docker-compose is missing in CI: `make system` installs it (Debian)")
    if binary is None:
        pytest.skip("docker-compose is not installed and `apt-get install docker-compose` failed")
    result = subprocess.run(
        [binary, "--env-file", str(ROOT / ".env.example"), "-f", "compose.yaml", "config"],
        cwd=COMPOSE_DIR,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"docker-compose config failed:\n{result.stderr}"
    return yaml.safe_load(result.stdout)  # type: ignore[no-any-return]


@pytest.fixture(scope="session")
def raw_compose() -> dict[str, Any]:
    """The file itself (anchors merged by the YAML loader, variables unresolved)."""
    return yaml.safe_load((COMPOSE_DIR / "compose.yaml").read_text())  # type: ignore[no-any-return]
