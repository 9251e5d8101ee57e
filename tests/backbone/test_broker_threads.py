"""The embedded broker's runtime: one tokio worker thread unless the environment says more."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.cpus import threads
from shared.stack.broker import start_broker, stop_process
from tests.support.stack import free_port


def _tokio_workers(pid: int) -> int:
    names = (Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip() for tid in threads(pid))
    return sum(name == "tokio-rt-worker" for name in names)


@pytest.mark.parametrize(("environment", "expected"), [(None, 1), ("2", 2)])
def test_the_embedded_broker_runs_one_worker_thread_unless_told(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, environment: str | None, expected: int
) -> None:
    if environment is None:
        monkeypatch.delenv("TOKIO_WORKER_THREADS", raising=False)
    else:
        monkeypatch.setenv("TOKIO_WORKER_THREADS", environment)
    proc = start_broker(f"127.0.0.1:{free_port()}", tmp_path / "tansu.log")
    try:
        assert _tokio_workers(proc.pid) == expected
    finally:
        stop_process(proc)
