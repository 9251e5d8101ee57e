"""``python -m shared.deploy kafka-init|prometheus [--check] [--output PATH]`` and
``python -m shared.deploy authority-init --dir DIR --keys DIR [--owner UID:GID]``."""

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
    parser.add_argument("what", choices=[*sorted(TARGETS), "authority-init"])
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is stale")
    parser.add_argument("--dir", type=Path, help="authority-init: where the public files go")
    parser.add_argument("--keys", type=Path, help="authority-init: <keys>/<service>/ folders")
    parser.add_argument("--owner", help="authority-init: UID:GID of the files (as root)")
    args = parser.parse_args(argv)
    if args.what == "authority-init":
        return _authority_init(args)
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


def _authority_init(args: argparse.Namespace) -> int:
    from shared.deploy.authority import authority_init
    from shared.settings import ServiceSettings

    if args.dir is None or args.keys is None:
        print("authority-init needs --dir and --keys")
        return 2
    secret = ServiceSettings(service_name="authority-init").admin_key
    if not secret:
        print("authority-init needs LLMOPS_ADMIN_KEY")
        return 2
    owner = None
    if args.owner:
        uid, _, gid = args.owner.partition(":")
        owner = (int(uid), int(gid or uid))
    written = authority_init(secret, args.dir, args.keys, discover(), owner)
    public = "authority.pub, authority.json, admin-key.sha256"
    print(f"wrote {args.dir}/{public}; keys of {', '.join(sorted(written))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
