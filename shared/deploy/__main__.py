"""``python -m shared.deploy kafka-init|prometheus [--check] [--output PATH]``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

from shared.deploy.kafka import render_init_script
from shared.deploy.prometheus import render_prometheus_config
from shared.plugins import ServicePlugin, discover

Renderer = Callable[[Iterable[ServicePlugin]], str]
# what -> (default output, renderer, executable)
TARGETS: dict[str, tuple[Path, Renderer, bool]] = {
    "kafka-init": (Path("compose/kafka/init.sh"), render_init_script, True),
    "prometheus": (Path("compose/prometheus/prometheus.yml"), render_prometheus_config, False),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared.deploy")
    parser.add_argument("what", choices=sorted(TARGETS))
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is stale")
    args = parser.parse_args(argv)
    default, render, executable = TARGETS[args.what]
    output: Path = args.output or default
    text = render(discover())
    if args.check:
        current = output.read_text() if output.exists() else ""
        if current != text:
            print(f"{output} is stale: run `python -m shared.deploy {args.what}`")
            return 1
        print(f"{output} is current")
        return 0
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text)
    if executable:
        output.chmod(0o755)
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
