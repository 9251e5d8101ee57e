"""A content-addressed, immutable artifact store over fsspec.

Objects live at ``<root>/sha256/<ab>/<digest>``; a put of bytes already there is a no-op,
so writers never overwrite and readers can verify what they read.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

import fsspec

from shared.events.envelope import ClaimCheck

CHUNK = 1 << 20


class ArtifactIntegrityError(IOError):
    """The bytes read do not match their recorded sha256 or size."""


def _checked_digest(digest: str) -> str:
    """A claim's digest names a file inside the store: it must be exactly 64 hex digits."""
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise ValueError(f"not a sha256 hex digest: {digest[:80]!r}")
    return digest


class ArtifactStore:
    def __init__(self, root: str) -> None:
        self.root = root.rstrip("/")
        self.fs, self._base = fsspec.core.url_to_fs(self.root)
        self.fs.makedirs(self._base, exist_ok=True)

    def _path(self, digest: str) -> str:
        digest = _checked_digest(digest)
        return f"{self._base}/sha256/{digest[:2]}/{digest}"

    def uri(self, digest: str) -> str:
        protocol = self.fs.protocol if isinstance(self.fs.protocol, str) else self.fs.protocol[0]
        path = self._path(digest)
        return path if protocol in ("file", "local") else f"{protocol}://{path}"

    def put_bytes(self, data: bytes, media_type: str = "application/octet-stream") -> ClaimCheck:
        return self.put_chunks([data], media_type)

    def put_chunks(self, chunks: Iterable[bytes], media_type: str) -> ClaimCheck:
        """Stream chunks into the store; memory stays flat whatever the size."""
        digest = hashlib.sha256()
        size = 0
        staging = f"{self._base}/staging"
        self.fs.makedirs(staging, exist_ok=True)
        tmp = f"{staging}/{uuid.uuid4().hex}"
        with self.fs.open(tmp, "wb") as out:
            for chunk in chunks:
                digest.update(chunk)
                size += len(chunk)
                out.write(chunk)
        hexdigest = digest.hexdigest()
        final = self._path(hexdigest)
        if self.fs.exists(final):
            self.fs.rm(tmp)
        else:
            self.fs.makedirs(final.rsplit("/", 1)[0], exist_ok=True)
            self.fs.mv(tmp, final)
        return ClaimCheck(
            uri=self.uri(hexdigest), sha256=hexdigest, size=size, media_type=media_type
        )

    def put_file(self, path: str | os.PathLike[str], media_type: str) -> ClaimCheck:
        with open(path, "rb") as handle:
            return self.put_chunks(iter(lambda: handle.read(CHUNK), b""), media_type)

    def open(self, claim: ClaimCheck) -> IO[bytes]:
        return self.fs.open(self._path(claim.sha256), "rb")  # type: ignore[no-any-return]

    def iter_chunks(self, claim: ClaimCheck) -> Iterator[bytes]:
        """Read in chunks, hashing as it goes; the size is checked before the first byte and
        reading stops at the claimed size, so a claim can never make a reader swallow more."""
        path = self._path(claim.sha256)
        stored = self.fs.size(path)
        if stored != claim.size:
            raise ArtifactIntegrityError(
                f"{claim.sha256[:12]}: {stored} bytes stored, claim says {claim.size}"
            )
        digest = hashlib.sha256()
        left = claim.size
        with self.fs.open(path, "rb") as handle:
            while left > 0 and (chunk := handle.read(min(CHUNK, left))):
                left -= len(chunk)
                digest.update(chunk)
                yield chunk
        if left or digest.hexdigest() != claim.sha256:
            raise ArtifactIntegrityError(f"{claim.sha256[:12]}: sha256 mismatch")

    def get_bytes(self, claim: ClaimCheck) -> bytes:
        return b"".join(self.iter_chunks(claim))

    def delete(self, claim: ClaimCheck) -> bool:
        """Remove an object (transit stores only: the artifact store is immutable)."""
        path = self._path(claim.sha256)
        if not self.fs.exists(path):
            return False
        self.fs.rm(path)
        return True

    def exists(self, claim: ClaimCheck) -> bool:
        return bool(self.fs.exists(self._path(claim.sha256)))

    def fetch_to(self, claim: ClaimCheck, directory: Path) -> Path:
        """Copy an artifact to a local file (verified); returns its path."""
        directory.mkdir(parents=True, exist_ok=True)
        target = directory / claim.sha256
        if target.exists():
            return target
        with tempfile.NamedTemporaryFile(dir=directory, delete=False) as out:
            for chunk in self.iter_chunks(claim):
                out.write(chunk)
        Path(out.name).rename(target)
        return target
