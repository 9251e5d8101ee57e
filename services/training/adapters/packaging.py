"""Model directories into the content-addressed store, as tarballs serving can unpack.

The tarball is deterministic (sorted names, zero mtimes and owners), so the same weights
give the same sha256 and the same model version. It is written to a temporary file and
the store moves it into place only when complete: a failed run leaves nothing behind.
"""

from __future__ import annotations

import tarfile
import tempfile
from pathlib import Path

from shared.events import ClaimCheck
from shared.modelkit import MODEL_TAR_MEDIA_TYPE
from shared.storage import ArtifactStore


def _normalized(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def put_dir(store: ArtifactStore, directory: Path) -> ClaimCheck:
    with tempfile.TemporaryDirectory() as tmp:
        tarball = Path(tmp) / "model.tar"
        with tarfile.open(tarball, "w", format=tarfile.PAX_FORMAT) as tar:
            for file in sorted(p for p in directory.rglob("*") if p.is_file()):
                tar.add(file, arcname=str(file.relative_to(directory)), filter=_normalized)
        return store.put_file(tarball, MODEL_TAR_MEDIA_TYPE)
