from __future__ import annotations

import pytest

from services.serving.gateway.keys import Action, KeyInfo, RateLimiter, Role, hash_key, new_secret
from services.serving.gateway.workers import WorkerDirectory
from shared.events.serving import ServedModel, WorkerHeartbeat

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_requests_per_minute_with_retry_after() -> None:
    clock = Clock()
    limiter = RateLimiter(clock)
    key = KeyInfo("k", "k", Role.ENGINEER, rpm=2, tpm=1000)
    assert limiter.check(key) is None
    clock.now += 10
    assert limiter.check(key) is None
    assert limiter.check(key) == ("requests", 50)
    clock.now += 50
    assert limiter.check(key) is None


def test_tokens_per_minute() -> None:
    clock = Clock()
    limiter = RateLimiter(clock)
    key = KeyInfo("k", "k", Role.ENGINEER, rpm=100, tpm=100)
    assert limiter.check(key) is None
    limiter.charge(key, 120)
    clock.now += 30
    assert limiter.check(key) == ("tokens", 30)
    clock.now += 31
    assert limiter.check(key) is None


def test_roles_and_hashing() -> None:
    secret = new_secret()
    assert secret not in hash_key(secret)
    assert len(hash_key(secret)) == 64
    viewer = KeyInfo("v", "v", Role.VIEWER, 1, 1)
    assert viewer.may(Action.LIST_MODELS)
    assert not viewer.may(Action.INFER)
    assert KeyInfo("a", "a", Role.ADMIN, 1, 1).may(Action.MANAGE_KEYS)
    assert not KeyInfo("e", "e", Role.ENGINEER, 1, 1).may(Action.MANAGE_KEYS)


def test_worker_directory_forgets_silent_and_stopping_workers() -> None:
    directory = WorkerDirectory(timeout_s=3)
    beat = WorkerHeartbeat(worker_id="w1", models=[ServedModel(name="m", version="1")])
    directory.observe(beat, now=10)
    assert directory.models(now=12) == {"m": {"1"}}
    assert directory.models(now=14) == {}
    directory.observe(beat, now=20)
    directory.observe(beat.model_copy(update={"status": "stopping"}), now=21)
    assert directory.live(now=21) == []
