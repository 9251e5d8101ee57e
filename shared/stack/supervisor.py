"""`llmops up`: broker, topics, one process per service, health, restarts, clean stop.

State of a running stack lives in ``<data_dir>/stack.json`` (pids, ports, health) so that
`llmops status` and `llmops down` work from another terminal.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
from rich.console import Console

from shared.authority import provision, service_principal
from shared.cpus import EngineCoreAvoider, keep_off_engine_cores
from shared.deploy.authority import command_grants
from shared.plugins import ProcessSpec, discover
from shared.settings import ServiceSettings
from shared.stack.log import EmbeddedLog
from shared.topics import CANCEL_TOPIC, ensure_topics
from shared.wire import create_channel

STATE_FILE = "stack.json"
MAX_BACKOFF_S = 30.0
COLORS = ["cyan", "magenta", "green", "yellow", "blue", "bright_red", "bright_cyan", "white"]


def state_path(settings: ServiceSettings) -> Path:
    return settings.data_dir / STATE_FILE


def read_state(settings: ServiceSettings) -> dict[str, Any] | None:
    try:
        return json.loads(state_path(settings).read_text())  # type: ignore[no-any-return]
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is not alive
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except OSError:
        return True


def ensure_admin_key(settings: ServiceSettings) -> bool:
    """Make sure an admin API key exists: LLMOPS_ADMIN_KEY, or one generated once into
    ``<data_dir>/admin.key`` (mode 0600). True if it was generated now.

    Services read it through ``settings.admin_secret()``; it is never put into a child's
    environment nor printed.
    """
    if settings.admin_secret():
        return False
    path = settings.admin_key_path
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text("llm-" + secrets.token_urlsafe(24) + "\n")
    return True


def provision_authority(settings: ServiceSettings) -> dict[str, str]:
    """Write the admin public key and the admin-signed principal registry under the data
    dir; return each service's own signing key. A service may issue the commands its
    plug-in declares it produces."""
    secret = settings.admin_secret()
    if secret is None:
        raise RuntimeError("no admin key to derive the authority keys from")
    return provision(secret, settings.data_dir.resolve(), command_grants(discover()))


def parse_scale(text: str | None, processes: list[ProcessSpec]) -> dict[str, int]:
    """``serving-worker=2,anonymization=2`` -> {label or service: replicas}, checked."""
    scale: dict[str, int] = {}
    known = {p.label for p in processes} | {p.service for p in processes}
    for item in filter(None, (part.strip() for part in (text or "").split(","))):
        name, sep, count = item.partition("=")
        if not sep or not count.strip().isdigit() or int(count) < 1:
            raise ValueError(f"--scale wants NAME=N with N >= 1, got {item!r}")
        if name.strip() not in known:
            raise ValueError(
                f"--scale: {name.strip()!r} is not a running process or service "
                f"(known: {', '.join(sorted(known))})"
            )
        single = [p for p in processes if name.strip() in (p.label, p.service) and p.singleton]
        if int(count) > 1 and single:
            raise ValueError(
                f"--scale: {single[0].label} runs as one process only: {single[0].singleton}"
            )
        scale[name.strip()] = int(count)
    return scale


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Child:
    spec: ProcessSpec
    color: str
    replica: int = 1
    """1 for the first process of a spec; 2.. for the extra ones of `up --scale`."""
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    next_start: float = 0.0
    healthy: bool = False
    groups: dict[str, list[str]] = field(default_factory=dict)  # as its /healthz reports
    started_at: float = 0.0
    pump: threading.Thread | None = None
    log: IO[bytes] | None = field(default=None, repr=False)

    @property
    def label(self) -> str:
        return self.spec.label if self.replica == 1 else f"{self.spec.label}-{self.replica}"


class Supervisor:
    def __init__(
        self,
        settings: ServiceSettings,
        processes: list[ProcessSpec],
        *,
        console: Console,
        echo_logs: bool = True,
        scale: dict[str, int] | None = None,
    ) -> None:
        self.settings = settings
        self.console = console
        self.echo_logs = echo_logs
        self.data_dir = settings.data_dir.resolve()
        self.log_dir = self.data_dir / "logs"
        self.children: list[Child] = []
        for spec in processes:  # replicas of one spec: same group, ports of their own
            count = (scale or {}).get(spec.label) or (scale or {}).get(spec.service) or 1
            for replica in range(1, count + 1):
                port = spec.resolved_port if replica == 1 else _free_port()
                color = COLORS[len(self.children) % len(COLORS)]
                self.children.append(Child(spec, color, replica=replica, port=port))
        self.log: EmbeddedLog | None = None
        self.core_avoider: EngineCoreAvoider | None = None
        self.service_keys: dict[str, str] = {}
        self.stopping = threading.Event()
        self._print_lock = threading.Lock()

    # -- lifecycle ---------------------------------------------------------------------
    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        try:
            self.start_all()
            self.print_urls()
            self.watch()
            return 0
        except Exception as exc:
            self.console.print(f"[red]llmops up failed:[/] {exc}")
            return 1
        finally:
            self.stop_all()

    def _on_signal(self, signum: int, _frame: Any) -> None:
        if not self.stopping.is_set():
            self.console.print(f"[bold]received {signal.Signals(signum).name}, stopping...[/]")
        self.stopping.set()

    def start_all(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        if ensure_admin_key(self.settings):
            self.console.print(
                f"[bold yellow]admin API key created:[/] {self.settings.admin_key_path} "
                "(readable by you only; `cat` it for OPENAI_API_KEY)"
            )
        self.service_keys = provision_authority(self.settings)
        bootstrap = self.settings.bootstrap_servers
        if self.settings.uses_embedded_broker:
            self.console.print(f"starting the embedded broker on {bootstrap}")
            self.log = EmbeddedLog(
                bootstrap,
                self.data_dir / "log",
                self.log_dir,
                want_durable=self.settings.embedded_log == "durable",
                hot_bootstrap=self.settings.embedded_ephemeral_bootstrap,
            )
            self.log.start()
            # the brokers off a local vLLM engine's cores, as the serving processes keep
            # themselves (shared.cpus): a broker thread on an engine core slows decoding
            self.core_avoider = keep_off_engine_cores(
                self.settings.keep_off_engine_cores_s, self.log.pids
            )
            if self.log.durable:
                self.console.print(
                    f"event log: {self.log.storage_dir} (durable; encrypted under "
                    f"{self.log.key_file}; record batches deleted past their topic's retention)"
                )
                self.console.print(
                    f"serving hops (inference requests, replies, cancels, worker heartbeats) "
                    f"on a second broker in memory on {self.log.ephemeral_bootstrap}, by "
                    "design: requests in flight end with their callers"
                )
            else:
                self.console.print(
                    f"[bold yellow]event log in memory: NOT durable[/] ({self.log.reason}); "
                    "`llmops down` or a broker crash loses every event not yet consumed"
                )
        else:
            self.console.print(f"using the Kafka cluster at {bootstrap}")
        created_topics = asyncio.run(
            ensure_topics(
                bootstrap,
                replication_factor=self.settings.replication_factor,
                ephemeral_bootstrap=self.ephemeral_bootstrap,
            )
        )
        self.console.print(f"topics ready ({len(created_topics)} created)")
        for child in self.children:
            self.spawn(child)
        self.write_state()
        self.wait_healthy()

    @property
    def ephemeral_bootstrap(self) -> str:
        """Where the serving hops travel: the embedded stack's in-memory broker beside a
        durable log, else the one broker (or the cluster's LLMOPS_KAFKA_EPHEMERAL_BOOTSTRAP)."""
        if self.log is not None:
            return self.log.ephemeral_bootstrap
        return self.settings.ephemeral_bootstrap_servers

    def spawn(self, child: Child) -> None:
        spec = child.spec
        env = {
            **os.environ,
            "LLMOPS_KAFKA_BOOTSTRAP": self.settings.bootstrap_servers,
            "LLMOPS_KAFKA_EPHEMERAL_BOOTSTRAP": self.ephemeral_bootstrap,
            "LLMOPS_DATA_DIR": str(self.data_dir),
            "LLMOPS_ADMIN_PORT": str(child.port),
            "HF_HUB_OFFLINE": "1",
            "PYTHONUNBUFFERED": "1",
        }
        if spec.service in self.service_keys:  # its own signing key, no one else's
            env["LLMOPS_AUTHORITY_PRINCIPAL"] = service_principal(spec.service)
            env["LLMOPS_AUTHORITY_KEY"] = self.service_keys[spec.service]
        if spec.port_env:  # a process reading its own port variable gets its replica's
            env[spec.port_env] = str(child.port)
        if child.replica > 1:
            env.update({k: v.replace("{replica}", str(child.replica)) for k, v in spec.replica_env})
        if child.log is None:
            child.log = (self.log_dir / f"{child.label}.log").open("ab")
        child.proc = subprocess.Popen(
            [sys.executable, "-m", spec.module],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        child.started_at = time.monotonic()
        child.healthy = False
        child.pump = threading.Thread(target=self._pump, args=(child, child.proc), daemon=True)
        child.pump.start()

    def _pump(self, child: Child, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        assert child.log is not None
        for line in iter(proc.stdout.readline, b""):
            child.log.write(line)
            child.log.flush()
            if self.echo_logs:
                text = line.decode("utf-8", "replace").rstrip()
                with self._print_lock:
                    self.console.print(
                        f"[{child.color}]{child.label:>14} |[/] {text}",
                        markup=True,
                        highlight=False,
                        soft_wrap=True,
                    )

    def check_health(self, child: Child) -> bool:
        url = f"http://127.0.0.1:{child.port}{child.spec.health_path}"
        try:
            response = httpx.get(url, timeout=2)
            child.healthy = response.status_code == 200
            if child.healthy and "json" in response.headers.get("content-type", ""):
                child.groups = response.json().get("consumer_groups") or child.groups
        except (httpx.HTTPError, ValueError):
            child.healthy = False
        return child.healthy

    def wait_healthy(self) -> None:
        pending = list(self.children)
        while pending and not self.stopping.is_set():
            for child in list(pending):
                assert child.proc is not None
                if child.proc.poll() is not None:
                    raise RuntimeError(
                        f"{child.label} exited with {child.proc.returncode} during start; "
                        f"see {self.log_dir / (child.label + '.log')}"
                    )
                if self.check_health(child):
                    self.console.print(f"[green]healthy[/] {child.label}")
                    pending.remove(child)
                elif time.monotonic() - child.started_at > (
                    self.settings.startup_timeout_s or child.spec.startup_timeout_s
                ):
                    raise RuntimeError(f"{child.label} not healthy after start timeout")
            self.write_state()
            time.sleep(0.3)
        self.write_state(ready=not self.stopping.is_set())

    def watch(self) -> None:
        """Restart a process that dies, with exponential backoff, until asked to stop."""
        last_health = 0.0
        while not self.stopping.wait(0.5):
            now = time.monotonic()
            if self.log is not None and (restarted := self.log.restart_dead()):
                self.console.print(f"[red]restarted the embedded {' and '.join(restarted)}[/]")
                asyncio.run(
                    ensure_topics(
                        self.settings.bootstrap_servers,
                        replication_factor=self.settings.replication_factor,
                        ephemeral_bootstrap=self.ephemeral_bootstrap,
                    )
                )
                if any(part.startswith("serving broker") for part in restarted):
                    # a fresh broker in memory: the cancel channel again; the reply topics
                    # are their requesters' (created at their start), their requests lost
                    asyncio.run(create_channel(self.ephemeral_bootstrap, CANCEL_TOPIC))
                    self.console.print(
                        "[yellow]the serving hops' broker lost what it held (in memory by "
                        "design); restart serving and labeling if replies stop[/]"
                    )
                self.write_state(ready=True)
            for child in self.children:
                assert child.proc is not None
                if child.proc.poll() is None:
                    if now - child.started_at > 60:
                        child.restarts = 0  # it stayed up: forget old crashes
                    continue
                if child.next_start == 0.0:
                    delay = min(MAX_BACKOFF_S, 2.0**child.restarts)
                    child.next_start = now + delay
                    self.console.print(
                        f"[red]{child.label} exited ({child.proc.returncode}); "
                        f"restarting in {delay:.0f}s[/]"
                    )
                elif now >= child.next_start:
                    child.restarts += 1
                    child.next_start = 0.0
                    self.spawn(child)
            if now - last_health > 5:
                for child in self.children:
                    self.check_health(child)
                last_health = now
                self.write_state(ready=True)

    def stop_all(self) -> None:
        self.stopping.set()
        for child in reversed(self.children):
            if child.proc is not None and child.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for child in self.children:
            if child.proc is None:
                continue
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.proc.wait(max(0.1, deadline - time.monotonic()))
            # the whole group: vLLM and others start helper processes of their own
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.proc.wait(5)
        if self.core_avoider is not None:
            self.core_avoider.stop()
        if self.log is not None:
            self.log.stop()
        with contextlib.suppress(FileNotFoundError):
            state_path(self.settings).unlink()
        self.console.print("stack stopped")

    # -- reporting ---------------------------------------------------------------------
    def write_state(self, ready: bool = False) -> None:
        state = {
            "supervisor_pid": os.getpid(),
            "ready": ready,
            "bootstrap": self.settings.bootstrap_servers,
            "ephemeral_bootstrap": self.ephemeral_bootstrap,
            "embedded_broker_pid": self.log.broker.pid if self.log and self.log.broker else None,
            "embedded_log": self.log.describe() if self.log else None,
            "data_dir": str(self.data_dir),
            "processes": [
                {
                    "label": c.label,
                    "service": c.spec.service,
                    "module": c.spec.module,
                    "port": c.port,
                    "pid": c.proc.pid if c.proc else None,
                    "healthy": c.healthy,
                    "restarts": c.restarts,
                    "consumer_groups": c.groups,
                }
                for c in self.children
            ],
        }
        tmp = state_path(self.settings).with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(state_path(self.settings))

    def print_urls(self) -> None:
        if self.stopping.is_set():
            return
        hops = self.ephemeral_bootstrap
        where = self.settings.bootstrap_servers
        if hops != where:
            where += f"; serving hops at {hops}"
        self.console.print(f"[bold green]llmops is up[/] (Kafka at {where})")
        for child in self.children:
            kind = "API + health" if child.spec.serves_api else "health/metrics"
            self.console.print(f"  {child.label:<16} http://127.0.0.1:{child.port}  ({kind})")
        self.console.print(f"  logs             {self.log_dir}")


def stop_detached(settings: ServiceSettings, timeout_s: float = 60.0) -> bool:
    """Stop the stack a `up --detach` started; True if one was running."""
    state = read_state(settings)
    if not state:
        return False
    pid = int(state["supervisor_pid"])
    pids = [p["pid"] for p in state["processes"] if p.get("pid")]
    if state.get("embedded_broker_pid"):
        pids.append(state["embedded_broker_pid"])
    log = state.get("embedded_log") or {}
    if log.get("store_pid"):
        pids.append(log["store_pid"])
    if (log.get("serving_broker") or {}).get("pid"):
        pids.append(log["serving_broker"]["pid"])
    if pid_alive(pid):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
    for leftover in [pid, *pids]:  # belt and braces: nothing may outlive `down`
        if pid_alive(leftover):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(leftover, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                os.kill(leftover, signal.SIGKILL)
    with contextlib.suppress(FileNotFoundError):
        state_path(settings).unlink()
    return True
