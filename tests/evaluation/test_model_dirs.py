"""Registered weights become local model directories: shared-disk dirs and store tarballs."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

from services.evaluation.adapters.engine import ModelDirs
from services.evaluation.config import EvaluationSettings
from shared.modelkit import MODEL_TAR_MEDIA_TYPE, is_model_dir
from shared.storage import ArtifactStore
from tests.evaluation import fakes

pytestmark = pytest.mark.unit


def test_tarball_is_unpacked_once_and_dirs_are_used_in_place(tmp_path: Path) -> None:
    settings = EvaluationSettings(
        data_dir=tmp_path / "data", bootstrap_model="m", bootstrap_path=tmp_path / "boot"
    )
    store = ArtifactStore(settings.artifact_root)
    source, dir_claim = fakes.model_dir(tmp_path, "v1")
    tarball = tmp_path / "v1.tar"
    with tarfile.open(tarball, "w") as tar:
        for file in Path(source).iterdir():
            tar.add(file, arcname=file.name)
    claim = store.put_file(tarball, MODEL_TAR_MEDIA_TYPE)
    dirs = ModelDirs(settings, store)

    unpacked = Path(dirs.resolve(claim.model_dump_json(), "m", "v1"))
    assert is_model_dir(unpacked)
    assert unpacked.name == claim.sha256
    assert dirs.resolve(claim.model_dump_json(), "m", "v1") == str(unpacked)
    assert dirs.resolve(dir_claim.model_dump_json(), "m", "v1") == source
    assert dirs.resolve(None, "m", "bootstrap") == str(tmp_path / "boot")
    with pytest.raises(FileNotFoundError, match="no weights"):
        dirs.resolve(None, "m", "v9")
