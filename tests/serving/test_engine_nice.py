"""The worker lowers the CPU priority of its own vLLM engine processes (titled ``VLLM::``)
after a load, and touches nothing else: real child processes, the kernel's nice values."""

from __future__ import annotations

import subprocess
import sys

import psutil

from services.serving.worker.adapters.vllm_engine import nice_engine_processes

ENGINE = (
    "import setproctitle, time; setproctitle.setproctitle('VLLM::EngineCore_test'); "
    "print('ready', flush=True); time.sleep(600)"
)
OTHER = "import time; print('ready', flush=True); time.sleep(600)"


def _start(code: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    return proc


def test_only_the_engine_children_are_niced_and_never_raised() -> None:
    engine, other = _start(ENGINE), _start(OTHER)
    try:
        assert nice_engine_processes(10) == [engine.pid]
        assert psutil.Process(engine.pid).nice() == 10
        assert psutil.Process(other.pid).nice() == psutil.Process().nice()
        assert nice_engine_processes(5) == []  # already lower: left as it is
        assert psutil.Process(engine.pid).nice() == 10
        assert nice_engine_processes(0) == []  # off
    finally:
        for proc in (engine, other):
            proc.kill()
            proc.wait()
