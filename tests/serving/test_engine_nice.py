"""The worker lowers the CPU priority of its own vLLM engine processes (titled ``VLLM::``)
after a load, and touches nothing else: real child processes, the kernel's nice values,
scheduling policies and affinities."""

from __future__ import annotations

import os

import psutil
import pytest

from services.serving.worker.adapters.vllm_engine import (
    idle_engine_compute,
    nice_engine_processes,
)
from shared.cpus import MACHINE
from tests.support.vllm_processes import IDLE, fake_engine_code, start

ENGINE = fake_engine_code("VLLM::EngineCore_test")  # binds nothing


def test_only_the_engine_children_are_niced_and_never_raised() -> None:
    engine, other = start(ENGINE), start(IDLE)
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


def _compute(cores: set[int]) -> str:
    """A fake vLLM CPU worker: its OpenMP thread bound to ``cores``."""
    return fake_engine_code("VLLM::Worker_test", cores)


def _policies(pid: int) -> set[int]:
    return {os.sched_getscheduler(int(tid)) for tid in os.listdir(f"/proc/{pid}/task")}


needs_two_cores = pytest.mark.skipif(
    len(MACHINE) < 2 or not hasattr(os, "SCHED_IDLE"),
    reason="needs Linux and two cores: a team bound to one is narrower than the machine",
)


@needs_two_cores
def test_a_one_core_compute_team_runs_idle_and_its_engine_core_joins_it() -> None:
    core = max(MACHINE)
    compute, scheduler, other = start(_compute({core})), start(ENGINE), start(IDLE)
    try:
        assert idle_engine_compute("off") == ([], [])
        assert _policies(compute.pid) == {os.SCHED_OTHER}

        assert idle_engine_compute("auto") == ([compute.pid], [scheduler.pid])
        assert _policies(compute.pid) == {os.SCHED_IDLE}  # every thread, bound or not
        assert os.sched_getaffinity(scheduler.pid) == {core}  # moved onto the team's core
        assert _policies(scheduler.pid) == {os.SCHED_IDLE}  # and idled too
        assert _policies(other.pid) == {os.SCHED_OTHER}
        assert os.sched_getaffinity(other.pid) == MACHINE
        # a second load (a promotion) finds the same compute: the moved EngineCore's pin
        # does not make it a compute process
        assert idle_engine_compute("auto") == ([compute.pid], [scheduler.pid])
    finally:
        for proc in (compute, scheduler, other):
            proc.kill()
            proc.wait()


def test_engines_without_bound_threads_are_left_alone() -> None:
    """GPU workers (and a CPU engine that binds nothing) have no OpenMP team to idle."""
    scheduler = start(ENGINE)
    try:
        assert idle_engine_compute("on") == ([], [])
        assert _policies(scheduler.pid) == {os.SCHED_OTHER}
        assert os.sched_getaffinity(scheduler.pid) == MACHINE
    finally:
        scheduler.kill()
        scheduler.wait()


@pytest.mark.skipif(len(MACHINE) < 3, reason="needs three cores: a two-core team and a spare")
def test_auto_leaves_a_larger_team_alone() -> None:
    """A preempted thread of a multi-core OpenMP team stalls the team: only `on` idles it."""
    team = set(sorted(MACHINE)[:2])
    compute = start(_compute(team))
    try:
        assert idle_engine_compute("auto") == ([], [])
        assert _policies(compute.pid) == {os.SCHED_OTHER}
        assert idle_engine_compute("on") == ([compute.pid], [])
        assert _policies(compute.pid) == {os.SCHED_IDLE}
    finally:
        compute.kill()
        compute.wait()
