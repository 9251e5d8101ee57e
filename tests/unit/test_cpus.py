"""``shared.cpus``: a serving process moves its threads off the cores a local vLLM engine's
OpenMP threads are bound to, and back when the engine is gone; an engine started under
``unpinned()`` may choose among every core. Real processes and the kernel's affinity; each
check runs in a child process so the test runner itself is never pinned."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import pytest

from shared.cpus import MACHINE, EngineCoreAvoider
from tests.support.vllm_processes import fake_engine_code, start

pytestmark = pytest.mark.skipif(
    len(MACHINE) < 2 or not os.path.isdir("/proc/self/task"),
    reason="needs Linux and at least two cores to pin anything",
)

ENGINE_CPU = max(MACHINE)

FAKE_ENGINE = fake_engine_code("VLLM::Worker_test", {ENGINE_CPU})


def run(code: str) -> dict[str, list[int]]:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


CHECK = """
    import json, os, threading
    from shared.cpus import EngineCoreAvoider
    done = threading.Event()
    worker = threading.Thread(target=done.wait)
    worker.start()  # a thread that exists before the check is pinned too
    cpus = EngineCoreAvoider(60).check()
    print(json.dumps({
        "returned": sorted(cpus),
        "main": sorted(os.sched_getaffinity(0)),
        "thread": sorted(os.sched_getaffinity(worker.native_id)),
    }))
    done.set()
"""


def test_a_process_keeps_off_a_local_engines_bound_cores_and_comes_back() -> None:
    free = sorted(MACHINE - {ENGINE_CPU})
    engine = start(FAKE_ENGINE)  # its thread is bound before it says ready
    try:
        # engine_cores() reads every process on the machine: until a real engine an earlier
        # test started has exited, its cores count too
        deadline = time.monotonic() + 30
        while (with_engine := run(CHECK))["returned"] != free and time.monotonic() < deadline:
            time.sleep(0.2)
        assert with_engine == {"returned": free, "main": free, "thread": free}
        # `llmops up` keeps its brokers off the same cores: another process, by pid
        broker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        try:
            avoider = EngineCoreAvoider(60, pids=lambda: [broker.pid])
            assert avoider.check() == frozenset(free)
            assert sorted(os.sched_getaffinity(broker.pid)) == free
            assert os.sched_getaffinity(0) == MACHINE  # the caller itself stays as it was
        finally:
            broker.kill()
            broker.wait()
    finally:
        engine.kill()
        engine.wait()
    without = run(CHECK)  # no engine: every core
    assert without["returned"] == sorted(MACHINE)
    assert without["main"] == sorted(MACHINE)


def test_an_engine_started_under_unpinned_may_use_every_core() -> None:
    result = run(
        f"""
        import json, os, subprocess, sys
        from shared.cpus import pin_process, unpinned
        pin_process(frozenset({{{min(MACHINE)}}}))
        probe = [sys.executable, "-c", "import os; print(sorted(os.sched_getaffinity(0)))"]
        pinned_child = subprocess.run(probe, capture_output=True, text=True).stdout
        with unpinned():
            free_child = subprocess.run(probe, capture_output=True, text=True).stdout
        print(json.dumps({{
            "pinned_child": json.loads(pinned_child),
            "free_child": json.loads(free_child),
            "after": sorted(os.sched_getaffinity(0)),
        }}))
        """
    )
    assert result["pinned_child"] == [min(MACHINE)]  # a child inherits its starter's cores
    assert result["free_child"] == sorted(MACHINE)
    assert result["after"] == [min(MACHINE)]
