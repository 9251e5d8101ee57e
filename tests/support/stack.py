"""Real-part helpers for the integration and e2e tiers: broker, service processes, waits."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from shared.authority import service_principal
from shared.settings import ServiceSettings
from shared.stack.broker import start_broker
from shared.stack.supervisor import provision_authority
from shared.topics import ensure_topics

ROOT = Path(__file__).resolve().parents[2]
# LLMOPS_EMBEDDED_LOG as the user set it, before tests/conftest.py makes memory the tests'
USER_EMBEDDED_LOG = os.environ.get("LLMOPS_EMBEDDED_LOG")


def default_embedded_log(env: dict[str, str]) -> dict[str, str]:
    """``env`` (a child's whole environment) with LLMOPS_EMBEDDED_LOG as the user has it:
    unset means the platform's default (durable), not the tests' memory."""
    env = dict(env)
    if USER_EMBEDDED_LOG is None:
        env.pop("LLMOPS_EMBEDDED_LOG", None)
    else:
        env["LLMOPS_EMBEDDED_LOG"] = USER_EMBEDDED_LOG
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.1) -> Any:
    """Poll until ``predicate()`` is truthy; returns its value or raises TimeoutError."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met in {timeout}s")
        time.sleep(interval)


@contextlib.contextmanager
def embedded_kafka(log_dir: Path) -> Iterator[str]:
    """A fresh tansu broker on a free port with every platform topic created."""
    bootstrap = f"127.0.0.1:{free_port()}"
    proc = start_broker(bootstrap, log_dir / "tansu.log")
    try:
        asyncio.run(ensure_topics(bootstrap))
        yield bootstrap
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


@contextlib.contextmanager
def embedded_log(work: Path, *, durable: bool = True) -> Iterator[dict[str, str]]:
    """The embedded log as `llmops up` runs it by default: tansu on the durable, encrypted
    store with the serving hops on a second broker in memory (``durable=False``: one memory
    broker, ``LLMOPS_EMBEDDED_LOG=memory``), every platform topic created on its broker.
    Yields the environment a service process needs to use it. The benchmarks measure the
    path a user takes, so they run on this, not on ``embedded_kafka``'s bare memory broker."""
    from shared.cpus import keep_off_engine_cores
    from shared.stack.log import EmbeddedLog

    log = EmbeddedLog(
        f"127.0.0.1:{free_port()}",
        work / "log",
        work,
        want_durable=durable,
        hot_bootstrap=f"127.0.0.1:{free_port()}" if durable else None,
        key_file=work / "keys" / "log-store.key",
    ).start()
    avoider = keep_off_engine_cores(ServiceSettings().keep_off_engine_cores_s, log.pids)
    try:
        if durable and not log.durable:
            raise RuntimeError(f"the durable log did not start: {log.reason}")
        asyncio.run(ensure_topics(log.bootstrap, ephemeral_bootstrap=log.ephemeral_bootstrap))
        yield {
            "LLMOPS_KAFKA_BOOTSTRAP": log.bootstrap,
            "LLMOPS_KAFKA_EPHEMERAL_BOOTSTRAP": log.ephemeral_bootstrap,
        }
    finally:
        if avoider is not None:
            avoider.stop()
        log.stop()


async def list_topics(bootstrap: str) -> set[str]:
    """Every topic on the broker at ``bootstrap``."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


def authority_env(data_dir: Path, admin_secret: str, service: str) -> dict[str, str]:
    """What `llmops up` gives one service's processes: the admin-signed principal registry
    under ``data_dir``, the service's own signing key, and verification turned on."""
    keys = provision_authority(ServiceSettings(data_dir=data_dir, admin_key=admin_secret))
    return {
        "LLMOPS_REQUIRE_AUTHORITY": "true",
        "LLMOPS_AUTHORITY_PRINCIPAL": service_principal(service),
        "LLMOPS_AUTHORITY_KEY": keys[service],
    }


class ServiceProcess:
    """``python -m module`` as a real process, health-checked on its admin port."""

    def __init__(self, module: str, env: dict[str, str], log_path: Path) -> None:
        self.module = module
        self.port = int(env.get("LLMOPS_ADMIN_PORT") or free_port())
        self.env = {**os.environ, **env, "LLMOPS_ADMIN_PORT": str(self.port)}
        self.env["PYTHONPATH"] = f"{ROOT}{os.pathsep}{self.env.get('PYTHONPATH', '')}"
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> ServiceProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", self.module],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            start_new_session=True,
        )
        try:
            wait_until(self.healthy, timeout=timeout, interval=0.2)
        except TimeoutError:
            self.stop()
            raise RuntimeError(
                f"{self.module} not healthy in {timeout}s:\n{self.log_tail()}"
            ) from None
        return self

    def healthy(self) -> bool:
        if self.proc is None or self.proc.poll() is not None:
            raise RuntimeError(f"{self.module} exited:\n{self.log_tail()}")
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def wait_exit(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    def kill(self) -> None:
        self.stop(signal.SIGKILL)


async def produce(
    bootstrap: str,
    topic: str,
    values: list[bytes],
    key: bytes | None = None,
    headers: list[tuple[str, bytes]] | None = None,
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(topic, value, key=key, headers=headers)
    finally:
        await producer.stop()


async def read_topic(bootstrap: str, topic: str, *, count: int, timeout: float = 30.0) -> list[Any]:
    """Read ``count`` records of ``topic`` from the beginning (raw ConsumerRecords)."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    await consumer.start()
    records: list[Any] = []
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while len(records) < count:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                break
            batch = await consumer.getmany(timeout_ms=int(min(remaining, 1.0) * 1000))
            for part in batch.values():
                records.extend(part)
    finally:
        await consumer.stop()
    return records


async def until(predicate: Callable[[], Any], timeout: float = 5.0, interval: float = 0.005) -> Any:
    """Async twin of ``wait_until``: poll without blocking the event loop."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not (value := predicate()):
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"condition not met in {timeout}s")
        await asyncio.sleep(interval)
    return value


def require_s3rver() -> list[str]:
    """The durable log store's command. Without it (no Node.js, or `make setup` not run) a
    test skips on a developer's machine and fails in CI (`.ci/run` sets CI), where `make
    setup` installs it: a missing store must not pass as a skip there."""
    from shared.stack.log import s3rver_binary

    binary = s3rver_binary()
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("s3rver is missing: `make setup` installs it under tools/s3rver")
        pytest.skip("s3rver not installed (make setup)")
    return binary
