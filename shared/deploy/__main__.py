"""``python -m shared.deploy kafka-init [--check] [--output PATH]``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from shared.deploy.kafka import render_init_script
from shared.plugins import discover

DEFAULT_OUTPUT = Path("compose/kafka/init.sh")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared.deploy")
    parser.add_argument("what", choices=["kafka-init"])
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is stale")
    args = parser.parse_args(argv)
    text = render_init_script(discover())
    if args.check:
        current = args.output.read_text() if args.output.exists() else ""
        if current != text:
            print(f"{args.output} is stale: run `python -m shared.deploy kafka-init`")
            return 1
        print(f"{args.output} is current")
        return 0
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    args.output.chmod(0o755)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
