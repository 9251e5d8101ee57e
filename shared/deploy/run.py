"""The container entrypoint: ``python -m shared.deploy.run LABEL`` runs one service process.

``LABEL`` is a process label of an installed plug-in (``ingestion``, ``serving-worker``...),
else ``$LLMOPS_PROCESS``. The process replaces this one (PID 1 gets the signals), with its
admin port and host set for a container unless the environment already says otherwise.
"""

from __future__ import annotations

import os
import sys

from shared.plugins import discover, process_by_label
from shared.settings import ServiceSettings


def command_for(label: str) -> tuple[list[str], dict[str, str]]:
    spec = process_by_label(label)
    if spec is None:
        known = ", ".join(p.label for plugin in discover() for p in plugin.processes)
        raise SystemExit(f"unknown process {label!r}; known: {known}")
    env = dict(os.environ)
    env.setdefault("LLMOPS_ADMIN_PORT", str(spec.resolved_port))
    env.setdefault("LLMOPS_ADMIN_HOST", "0.0.0.0")
    env["LLMOPS_PROCESS"] = label
    return [sys.executable, "-m", spec.module], env


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    label = args[0] if args else ServiceSettings().process or ""
    if not label:
        raise SystemExit("usage: python -m shared.deploy.run LABEL (or set LLMOPS_PROCESS)")
    command, env = command_for(label)
    os.execve(command[0], command, env)  # noqa: S606 - the process replaces this one


if __name__ == "__main__":
    main()
