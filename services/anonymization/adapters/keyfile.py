"""Where the master pseudonym key lives (the environment, or a 0600 file made once), and the
vault's key-encryption keys."""

from __future__ import annotations

import contextlib
import json
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


# -- the vault's key-encryption keys ------------------------------------------------------
MASTER_KEK = "master"
"""Id of the KEK derived from the master secret: the vault's KEK until the first rotation."""


def kek_path(data_dir: Path) -> Path:
    return data_dir / "secrets" / "vault-kek.json"


class VaultKeks:
    """The vault's key-encryption keys by id: ``master`` (derived from the master secret) and
    the random ones ``llmops keys rotate-kek`` made, kept in a 0600 JSON file
    (``<data_dir>/secrets/vault-kek.json``). The database says which one is current; a
    retired KEK is deleted from the file. The file is re-read when an id is not in memory
    (another process rotated)."""

    def __init__(self, ring: KeyRing, path: Path | None = None) -> None:
        self.ring = ring
        self.path = path
        self._keys: dict[str, bytes] = {}

    def _read(self) -> dict[str, bytes]:
        if self.path is None or not self.path.exists():
            return {}
        document = json.loads(self.path.read_text())
        return {str(k): bytes.fromhex(v) for k, v in document.get("keys", {}).items()}

    def ids(self) -> list[str]:
        """The random KEKs the file holds now."""
        return sorted(self._read())

    def get(self, kek_id: str) -> bytes:
        if kek_id == MASTER_KEK:
            return self.ring.kek
        if kek_id not in self._keys:
            self._keys = self._read()
        try:
            return self._keys[kek_id]
        except KeyError:
            raise KeyError(f"KEK {kek_id!r} is not in {self.path} (retired or lost)") from None

    def _write(self, keys: dict[str, bytes]) -> None:
        if self.path is None:
            raise RuntimeError("this vault has no KEK file to rotate into")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):
            self.path.parent.chmod(0o700)
        tmp = self.path.with_name(f".vault-kek.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump({"keys": {k: v.hex() for k, v in sorted(keys.items())}}, out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, self.path)  # atomic: readers see the old file or the new one
        self._keys = dict(keys)

    def add(self) -> tuple[str, bytes]:
        """A new random KEK, saved (not yet current) before anything is wrapped with it."""
        kek_id, key = secrets.token_hex(8), secrets.token_bytes(32)
        self._write({**self._read(), kek_id: key})
        return kek_id, key

    def retire_all_but(self, current: str) -> list[str]:
        """Delete every KEK from the file but ``current``; returns the ids deleted."""
        keys = self._read()
        retired = sorted(k for k in keys if k != current)
        if retired:
            self._write({k: v for k, v in keys.items() if k == current})
        return retired
