"""Where the master pseudonym key lives: the environment, or a 0600 file made once."""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from services.anonymization.keys import KeyRing, parse_master_key


def key_path(data_dir: Path) -> Path:
    return data_dir / "secrets" / "pseudonym.key"


def load_keyring(env_value: str | None, data_dir: Path, *, create: bool = True) -> KeyRing:
    """The key from ``LLMOPS_PSEUDONYM_KEY`` if set, else from the key file.

    The file is created atomically with mode 0600 the first time (by whichever process
    comes first: the service or the CLI); everyone after reads the same key.
    """
    if env_value:
        return KeyRing(parse_master_key(env_value))
    path = key_path(data_dir)
    if not path.exists():
        if not create:
            raise FileNotFoundError(f"no pseudonym key at {path} and LLMOPS_PSEUDONYM_KEY unset")
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):
            path.parent.chmod(0o700)
        tmp = path.with_name(f".pseudonym.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_hex(32) + "\n")
        try:
            os.link(tmp, path)  # atomic and exclusive: the first writer wins
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return KeyRing(parse_master_key(path.read_text()))
