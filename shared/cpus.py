"""Keep latency-bound platform processes off the cores a local vLLM engine computes on.

vLLM's CPU backend binds each engine worker's OpenMP threads to a set of cores (it leaves
one core per worker to "other processes": ``VLLM_CPU_OMP_THREADS_BIND``, reserved cores)
and spins them while it decodes. A process that the kernel schedules on one of those cores
preempts a decode thread: the engine slows for everyone, and the process waits behind a
spinning thread. vLLM's own API server is one process; the serving path here is three (the
broker, the gateway, the worker's Kafka side), so it pays that more often.

``keep_off_engine_cores()`` starts a daemon thread that, every few seconds, finds the cores
the OpenMP threads of local engine processes are bound to (vLLM titles them ``VLLM::...``;
a bound thread's affinity is narrower than the machine's) and pins every thread of this
process to the other cores; with no engine about (or nothing left over) it unpins. Measured
on 2 cores at concurrency 1 (docs/serving.md): +10% tokens/s with the worker kept off, +16-18%
with the broker, gateway and worker.

An engine must be started from an unpinned thread: vLLM chooses its cores among the ones
its process may use (``os.sched_getaffinity``), and a process inherits the affinity of the
thread that starts it. ``unpinned()`` gives the calling thread the machine's cores back for
that.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator

import psutil

log = logging.getLogger(__name__)

ENGINE_TITLE = "VLLM::"  # vLLM's process titles: VLLM::EngineCore, VLLM::Worker...
SCHEDULER_TITLE = "VLLM::EngineCore"  # runs no OpenMP team; the serving worker may pin it
MACHINE = frozenset(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else frozenset()
"""The cores this process could use when it started (before any pinning)."""


def engine_cores(processes: Iterable[psutil.Process] | None = None) -> frozenset[int]:
    """Cores the threads of local vLLM engine processes are bound to (their affinity is
    narrower than the machine's); empty when there is no engine or none is bound. The
    EngineCore computes nothing: the serving worker pins it onto the compute cores, and
    those pins do not count."""
    bound: set[int] = set()
    for proc in psutil.process_iter(["cmdline"]) if processes is None else processes:
        try:
            cmdline = proc.cmdline()
            if not cmdline or not cmdline[0].startswith(ENGINE_TITLE):
                continue
            if cmdline[0].startswith(SCHEDULER_TITLE):
                continue
            threads = proc.threads()
        except psutil.Error:  # gone, or not ours to read
            continue
        for thread in threads:
            try:
                mask = os.sched_getaffinity(thread.id)
            except OSError:
                continue
            if mask and mask < MACHINE:
                bound |= mask
    return frozenset(bound)


def threads(pid: int | None = None) -> list[int]:
    """The thread ids of this process (or of ``pid``); empty once it is gone."""
    try:
        return [int(tid) for tid in os.listdir(f"/proc/{pid or 'self'}/task")]
    except OSError:  # the process is gone
        return []


def pin_process(cpus: frozenset[int], pid: int | None = None) -> None:
    """Every thread of this process (or of ``pid``) onto ``cpus``; threads started later
    inherit their creator's, and the next round catches the others."""
    for tid in threads(pid):
        with contextlib.suppress(OSError):  # a thread that ended meanwhile
            os.sched_setaffinity(tid, cpus)


@contextlib.contextmanager
def unpinned() -> Iterator[None]:
    """The calling thread may run on every core of the machine for the block (an engine
    started here chooses its cores from all of them); its pinning comes back after."""
    if not MACHINE:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, MACHINE)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, before)


class EngineCoreAvoider:
    """The daemon thread of ``keep_off_engine_cores``; ``check()`` is one round."""

    def __init__(
        self, interval_s: float, pids: Callable[[], Iterable[int | None]] | None = None
    ) -> None:
        self.interval_s = interval_s
        self.pids = pids or (lambda: [None])  # None: this process
        self.current = MACHINE
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="engine-core-avoider", daemon=True)

    def check(self) -> frozenset[int]:
        """Pin the processes off the engines' cores, or back onto all; returns their cores."""
        free = MACHINE - engine_cores()
        wanted = free or MACHINE
        if wanted != MACHINE or wanted != self.current:
            for pid in self.pids():  # every round: threads an unpinned thread started since
                pin_process(wanted, pid)
        if wanted != self.current:
            log.info(
                "cores of this process",
                extra={"cpus": sorted(wanted), "engine_cpus": sorted(MACHINE - free)},
            )
            self.current = wanted
        return wanted

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.check()
            except Exception:  # never take the service down for a scheduling hint
                log.exception("could not check the engines' cores")
            self._stop.wait(self.interval_s)

    def start(self) -> EngineCoreAvoider:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()


def keep_off_engine_cores(
    interval_s: float = 5.0, pids: Callable[[], Iterable[int | None]] | None = None
) -> EngineCoreAvoider | None:
    """Start keeping this process (or the processes ``pids()`` names: `llmops up` for its
    brokers) off local engines' cores. Linux with more than one core; None elsewhere, or
    when ``interval_s`` is 0."""
    if interval_s <= 0 or len(MACHINE) < 2 or not os.path.isdir("/proc/self/task"):
        return None
    return EngineCoreAvoider(interval_s, pids).start()
