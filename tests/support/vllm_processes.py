"""Stand-ins for vLLM's engine processes, for the tests of core placement and priority:
a real child process with vLLM's process title and, like vLLM's CPU worker, an OpenMP-like
thread bound to some cores. It says ``ready`` only once that thread is bound."""

from __future__ import annotations

import subprocess
import sys
import textwrap

IDLE = "import time; print('ready', flush=True); time.sleep(600)"  # not an engine


def fake_engine_code(title: str, cores: set[int] | None = None) -> str:
    """Python source of a process titled ``title`` whose second thread is bound to
    ``cores`` (None: nothing bound, as an EngineCore or a GPU worker)."""
    return textwrap.dedent(
        f"""
        import os, threading, time, setproctitle
        setproctitle.setproctitle({title!r})
        bound = threading.Event()
        def omp():  # an OpenMP thread as vLLM binds it
            if {cores!r} is not None:
                os.sched_setaffinity(0, {cores!r})
            bound.set()
            time.sleep(600)
        threading.Thread(target=omp, daemon=True).start()
        bound.wait()
        print("ready", flush=True)
        time.sleep(600)
        """
    )


def start(code: str) -> subprocess.Popen[str]:
    """Run ``code`` in a child process; returns once it printed ``ready``."""
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    return proc
