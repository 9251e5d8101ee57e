"""The container health check: exit 0 if this container's process answers /healthz with 200.

``python -m shared.deploy.health [LABEL]`` (default ``$LLMOPS_PROCESS``); no curl needed.
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request

from shared.plugins import process_by_label
from shared.settings import ServiceSettings


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    settings = ServiceSettings()
    label = args[0] if args else settings.process or ""
    spec = process_by_label(label)
    if spec is None:
        print(f"unknown process {label!r}", file=sys.stderr)
        return 2
    port = settings.admin_port or spec.resolved_port
    url = f"http://127.0.0.1:{port}{spec.health_path}"
    try:
        with urllib.request.urlopen(url, timeout=4) as response:
            return 0 if response.status == 200 else 1
    except (urllib.error.URLError, OSError) as exc:
        print(f"{url}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
