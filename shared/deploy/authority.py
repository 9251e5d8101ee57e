"""Command signatures for compose/: the one-shot ``authority-init`` job.

``python -m shared.deploy authority-init --dir DIR --keys KEYS [--owner UID:GID]`` derives
everything from the admin key (``LLMOPS_ADMIN_KEY``), as ``llmops up`` does on one host:

* ``DIR/authority.pub`` and the admin-signed registry ``DIR/authority.json`` (public; every
  service container mounts DIR read-only as ``LLMOPS_AUTHORITY_DIR``);
* ``DIR/admin-key.sha256``: the root API key's sha256, so that services recognise the root
  key (API key checks compare hashes, shared/keys.py) without holding it: compose gives
  ``LLMOPS_ADMIN_KEY`` to this job only;
* ``KEYS/<service>/authority.key`` (0600), one folder per plug-in: compose gives each
  service's containers only its own folder, as ``LLMOPS_AUTHORITY_KEY_FILE``.

Keys are deterministic (HKDF of the admin key), so running the job again rewrites the same
files; a new admin key re-keys every service on their next start.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

from shared.authority import COMMANDS, provision
from shared.plugins import ServicePlugin
from shared.settings import ADMIN_KEY_HASH_FILE

KEY_FILE = "authority.key"


def command_grants(plugins: Iterable[ServicePlugin]) -> dict[str, set[str]]:
    """Each plug-in -> the commands it may issue: those it declares it produces."""
    return {
        plugin.name: {t.event.EVENT_TYPE for t in plugin.produces if t.event.EVENT_TYPE in COMMANDS}
        for plugin in plugins
    }


def authority_init(
    secret: str,
    public_dir: Path,
    keys_dir: Path,
    plugins: Iterable[ServicePlugin],
    owner: tuple[int, int] | None = None,
) -> dict[str, Path]:
    """Write the public registry and every service's key file; returns the key files."""
    keys = provision(secret, public_dir, command_grants(plugins))
    (public_dir / ADMIN_KEY_HASH_FILE).write_text(
        hashlib.sha256(secret.encode()).hexdigest() + "\n"
    )
    written: dict[str, Path] = {}
    for name in ("authority.pub", "authority.json", ADMIN_KEY_HASH_FILE):
        _own(public_dir / name, 0o644, owner)
    for service, key in keys.items():
        folder = keys_dir / service
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / KEY_FILE
        tmp = folder / f".{KEY_FILE}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(key + "\n")
        _own(tmp, 0o600, owner)
        os.replace(tmp, path)
        _own(folder, 0o700, owner)
        written[service] = path
    return written


def _own(path: Path, mode: int, owner: tuple[int, int] | None) -> None:
    path.chmod(mode)
    if owner is not None:
        os.chown(path, *owner)
