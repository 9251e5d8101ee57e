"""The fetch pace of the latency-bound consumers: fast while work is in flight, slower once
idle for a while, on the attribute aiokafka's fetcher reads for every fetch it builds."""

from __future__ import annotations

import pytest

from services.serving.wire import FetchPace

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Fetcher:
    def __init__(self) -> None:
        self._fetch_max_wait_ms = 5


class Consumer:
    def __init__(self) -> None:
        self._fetcher = Fetcher()


def test_busy_is_fast_at_once_and_idle_is_slow_only_after_the_linger() -> None:
    clock, consumer = Clock(), Consumer()
    pace = FetchPace(5, 25, linger_s=1.0, clock=clock)
    pace.attach(consumer)  # nothing in flight yet: idle
    assert consumer._fetcher._fetch_max_wait_ms == 25
    pace.busy()
    assert consumer._fetcher._fetch_max_wait_ms == 5
    clock.now += 0.5
    pace.settle(active=False)  # quiet, but not for long: stays fast
    assert consumer._fetcher._fetch_max_wait_ms == 5
    clock.now += 0.6
    pace.settle(active=False)
    assert consumer._fetcher._fetch_max_wait_ms == 25
    pace.settle(active=True)
    assert consumer._fetcher._fetch_max_wait_ms == 5


def test_a_consumer_without_the_fetcher_attribute_keeps_its_wait() -> None:
    pace = FetchPace(5, 25)
    pace.attach(object())
    pace.busy()
    pace.settle(active=False)
    assert pace.current == -1
