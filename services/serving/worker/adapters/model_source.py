"""Where model versions come from: the bootstrap model, local dirs, artifact tarballs."""

from __future__ import annotations

import fcntl
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from shared.events import ClaimCheck
from shared.modelkit import MODEL_DIR_MEDIA_TYPE, ensure_tiny_model, is_model_dir
from shared.storage import ArtifactStore


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Several workers share a data dir: one builds or unpacks, the others wait."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class ModelSource:
    def __init__(self, models_dir: Path, artifacts: ArtifactStore) -> None:
        self.models_dir = models_dir
        self.artifacts = artifacts

    def bootstrap(self) -> Path:
        target = self.models_dir / "bootstrap"
        with _locked(self.models_dir / ".bootstrap.lock"):
            return ensure_tiny_model(target)

    def resolve(self, artifact: ClaimCheck) -> str:
        """A local directory vLLM can load for this artifact (unpacked once, cached)."""
        if artifact.media_type == MODEL_DIR_MEDIA_TYPE or Path(artifact.uri).is_dir():
            path = Path(artifact.uri.removeprefix("file://"))
            if not is_model_dir(path):
                raise FileNotFoundError(f"{path} is not a model directory")
            return str(path)
        target = self.models_dir / artifact.sha256
        with _locked(self.models_dir / f".{artifact.sha256}.lock"):
            if not is_model_dir(target):
                tarball = self.artifacts.fetch_to(artifact, self.models_dir / "tarballs")
                staging = target.with_name(f".{target.name}.partial")
                with tarfile.open(tarball) as tar:
                    tar.extractall(staging, filter="data")
                inner = next((p for p in [staging, *staging.iterdir()] if is_model_dir(p)), None)
                if inner is None:
                    raise FileNotFoundError(f"{artifact.uri} holds no model directory")
                inner.rename(target)
        return str(target)
