"""The embedded log: tansu over a filesystem-backed S3 store, so events survive restarts.

Tansu (the only Kafka-protocol broker that installs here) keeps its log either in memory or
in an S3 bucket. ``s3rver`` (npm, MIT, installed by ``make setup`` under ``tools/s3rver``;
``tools/s3rver/server.js`` runs it with crash-safe writes) serves a bucket from a plain
directory: ``<data_dir>/log``. Tansu writes every produced
batch and every committed offset there before it answers, so topics, offsets and DLQs
survive `llmops down` / `up` and a broker killed with SIGKILL (docs/backbone.md).

The store encrypts every object (AES-256-GCM) under ``<data_dir>/keys/log-store.key``
(created here at the first start, mode 0600, outside the log directory) and deletes record
batches older than their topic's ``retention.ms`` every ``LLMOPS_LOG_SWEEP_INTERVAL_S``
seconds (default 60): the raw hops are neither kept past their retention nor on disk in clear.

Beside a durable log, a second tansu runs on ``memory://`` at ``hot_bootstrap``
(``LLMOPS_EMBEDDED_EPHEMERAL_BOOTSTRAP``) for the serving hops (``shared.topics.is_ephemeral``:
inference requests, reply topics, cancels, worker heartbeats): tansu's fetch on the s3
engine stops reading a partition's listing at the consumer's ``fetch.max.wait.ms``, so those
many-batch partitions read with 5 ms waits would stall at their tail (docs/backbone.md).

Without s3rver (no Node.js) or with ``LLMOPS_EMBEDDED_LOG=memory`` the broker runs in
memory and says so: the log is then NOT durable, and that one broker carries every topic.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.stack.broker import (
    MEMORY_STORAGE,
    start_broker,
    start_process,
    stop_process,
    tansu_binary,
)

ROOT = Path(__file__).resolve().parents[2]
BUCKET = "tansu"
TOOL = ROOT / "tools" / "s3rver"
NO_STORE_HELP = (
    "s3rver was not found (Node.js and `make setup`, which installs it with npm under tools/s3rver)"
)


def s3rver_binary() -> list[str] | None:
    """The command that runs the log store, or None when Node.js or s3rver is missing."""
    node = shutil.which("node")
    if node is None or not (TOOL / "node_modules" / "s3rver" / "package.json").exists():
        return None
    return [node, str(TOOL / "server.js")]


def ensure_key_file(path: Path) -> Path:
    """The store's data key: 32 random bytes (hex), created once with mode 0600. Losing it
    loses the log (every object is encrypted under it)."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_hex(32) + "\n")
        os.replace(tmp, path)
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class EmbeddedLog:
    """The broker process and, when durable, the object store under it."""

    bootstrap: str
    storage_dir: Path
    log_dir: Path
    want_durable: bool = True
    broker: subprocess.Popen[bytes] | None = None
    store: subprocess.Popen[bytes] | None = None
    store_port: int = 0
    reason: str = ""
    hot_bootstrap: str | None = None
    """Listener of the serving hops' in-memory broker, started only beside a durable log."""
    hot_broker: subprocess.Popen[bytes] | None = None
    key_file: Path | None = None
    """The store's data key; default ``<storage_dir>/../keys/log-store.key``."""
    _binary: list[str] | None = field(default=None, repr=False)

    @property
    def durable(self) -> bool:
        return self.store is not None

    @property
    def ephemeral_bootstrap(self) -> str:
        """Where the serving hops travel: the in-memory broker when one runs, else the log's."""
        return (
            self.hot_bootstrap
            if self.hot_broker is not None and self.hot_bootstrap
            else (self.bootstrap)
        )

    def start(self) -> EmbeddedLog:
        tansu_binary()  # fail early and clearly, before anything else is started
        try:
            if self.want_durable:
                self._binary = s3rver_binary()
                if self._binary is None:
                    self.reason = NO_STORE_HELP
                else:
                    self._start_store()
            elif not self.reason:
                self.reason = "LLMOPS_EMBEDDED_LOG=memory"
            self._start_broker()
            if self.durable and self.hot_bootstrap and self.hot_bootstrap != self.bootstrap:
                self._start_hot_broker()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_store(self) -> None:
        assert self._binary is not None
        self.storage_dir.mkdir(parents=True, exist_ok=True)
        self.store_port = self.store_port or free_port()
        address = f"127.0.0.1:{self.store_port}"
        command = [*self._binary, str(self.storage_dir), str(self.store_port), BUCKET]
        if self.key_file is None:
            self.key_file = self.storage_dir.resolve().parent / "keys" / "log-store.key"
        env = {"LLMOPS_LOG_STORE_KEY_FILE": str(ensure_key_file(self.key_file))}
        self.store = start_process(
            command, address, self.log_dir / "log-store.log", name="log store (s3rver)", env=env
        )

    def _start_broker(self) -> None:
        env: dict[str, str] = {}
        storage = MEMORY_STORAGE
        if self.store is not None:
            storage = f"s3://{BUCKET}/"
            env = {  # s3rver's fixed local credentials; nothing leaves 127.0.0.1
                "AWS_ACCESS_KEY_ID": "S3RVER",
                "AWS_SECRET_ACCESS_KEY": "S3RVER",
                "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_ENDPOINT": f"http://127.0.0.1:{self.store_port}",
                "AWS_ALLOW_HTTP": "true",
            }
        self.broker = start_broker(
            self.bootstrap, self.log_dir / "broker.log", storage=storage, env=env
        )

    def _start_hot_broker(self) -> None:
        assert self.hot_bootstrap is not None
        self.hot_broker = start_broker(
            self.hot_bootstrap, self.log_dir / "broker-serving.log", storage=MEMORY_STORAGE
        )

    def pids(self) -> list[int | None]:
        """The processes of the log now running: brokers and store (restarts included)."""
        return [p.pid for p in (self.broker, self.hot_broker, self.store) if p is not None]

    def restart_dead(self) -> list[str]:
        """Restart whichever part died (store first: the broker needs it); names them."""
        restarted = []
        if self.store is not None and self.store.poll() is not None:
            self._start_store()
            restarted.append("log store")
        if self.broker is None or self.broker.poll() is not None:
            self._start_broker()
            restarted.append("broker")
        if self.hot_broker is not None and self.hot_broker.poll() is not None:
            self._start_hot_broker()  # empty: the requests it held are lost with their callers
            restarted.append("serving broker (in memory)")
        return restarted

    def stop(self) -> None:
        stop_process(self.hot_broker)
        stop_process(self.broker)  # the broker first: it may still be writing to the store
        stop_process(self.store)

    def describe(self) -> dict[str, Any]:
        """What stack.json records: where the log lives and whether it survives a restart."""
        return {
            "durable": self.durable,
            "path": str(self.storage_dir) if self.durable else None,
            "storage": f"s3://{BUCKET}/ on s3rver" if self.durable else MEMORY_STORAGE,
            "key_file": str(self.key_file) if self.durable else None,
            "reason": self.reason or None,
            "broker_pid": self.broker.pid if self.broker else None,
            "store_pid": self.store.pid if self.store else None,
            # the serving hops' broker (in memory by design), None when the log's carries them
            "serving_broker": (
                {"bootstrap": self.hot_bootstrap, "pid": self.hot_broker.pid, "storage": "memory"}
                if self.hot_broker is not None
                else None
            ),
        }
