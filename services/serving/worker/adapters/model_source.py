"""Where model versions come from: the bootstrap model, local dirs, artifact tarballs; each
a full model directory or a LoRA adapter (PEFT's adapter_config.json + weights)."""

from __future__ import annotations

import fcntl
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from shared.events import ClaimCheck
from shared.modelkit import (
    MODEL_DIR_MEDIA_TYPE,
    adapter_base,
    ensure_tiny_model,
    is_adapter_dir,
    is_model_dir,
    weights_digest,
)
from shared.storage import ArtifactStore


def _servable(path: Path) -> bool:
    return is_adapter_dir(path) or is_model_dir(path)


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
        self._digests: dict[str, str | None] = {}  # path -> weights digest (hashed once)

    def bootstrap(self) -> Path:
        target = self.models_dir / "bootstrap"
        with _locked(self.models_dir / ".bootstrap.lock"):
            return ensure_tiny_model(target)

    def resolve(self, artifact: ClaimCheck) -> str:
        """A local directory vLLM can load for this artifact (unpacked once, cached)."""
        if artifact.media_type == MODEL_DIR_MEDIA_TYPE or Path(artifact.uri).is_dir():
            path = Path(artifact.uri.removeprefix("file://"))
            if not _servable(path):
                raise FileNotFoundError(f"{path} is neither a model nor a LoRA adapter directory")
            return str(path)
        target = self.models_dir / artifact.sha256
        with _locked(self.models_dir / f".{artifact.sha256}.lock"):
            if not _servable(target):
                tarball = self.artifacts.fetch_to(artifact, self.models_dir / "tarballs")
                staging = target.with_name(f".{target.name}.partial")
                with tarfile.open(tarball) as tar:
                    tar.extractall(staging, filter="data")
                inner = next((p for p in [staging, *staging.iterdir()] if _servable(p)), None)
                if inner is None:
                    raise FileNotFoundError(f"{artifact.uri} holds no model directory")
                inner.rename(target)
        return str(target)

    def adapter_base(self, location: str) -> str | None:
        """None for a full model dir; for a LoRA adapter, the base it declares."""
        path = Path(location)
        if is_model_dir(path) or not is_adapter_dir(path):
            return None
        return adapter_base(path)

    def same_model(self, declared: str, location: str) -> bool:
        """Same directory, or two directories with the same config and weights."""
        mine, theirs = Path(declared).expanduser(), Path(location)
        if not mine.is_dir() or not theirs.is_dir():
            return declared == location
        if mine.resolve() == theirs.resolve():
            return True
        digests = [self._digest(mine.resolve()), self._digest(theirs.resolve())]
        return digests[0] is not None and digests[0] == digests[1]

    def _digest(self, path: Path) -> str | None:
        if str(path) not in self._digests:
            self._digests[str(path)] = weights_digest(path)
        return self._digests[str(path)]
