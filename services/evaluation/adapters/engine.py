"""The Generator port as a child process (adapters/generate.py), and model directories."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from services.evaluation.config import EvaluationSettings
from services.evaluation.ports import Generation
from shared.events import ClaimCheck
from shared.modelkit import MODEL_DIR_MEDIA_TYPE, ensure_tiny_model, is_model_dir
from shared.storage import ArtifactStore


class GenerationError(RuntimeError):
    pass


class SubprocessGenerator:
    """Runs adapters/generate.py for the models not in the cache, all in one child process.

    Generations are cached per (model directory contents, prompts, generation settings): the
    champion is scored once per test set, not once per candidate.
    """

    def __init__(self, settings: EvaluationSettings) -> None:
        self.settings = settings
        self.cache = Path(settings.data_dir) / "evaluation" / "generations"

    def _key(self, model_dir: str, prompts: list[str], references: list[str]) -> str:
        s = self.settings
        files = sorted(
            (str(p.relative_to(model_dir)), p.stat().st_size, p.stat().st_mtime_ns)
            for p in Path(model_dir).rglob("*")
            if p.is_file()
        )
        body = [
            model_dir,
            files,
            prompts,
            references,
            s.backend,
            s.max_new_tokens,
            s.max_model_len,
            s.load_test_requests,
        ]
        return hashlib.sha256(json.dumps(body).encode()).hexdigest()

    def generate(
        self, model_dirs: list[str], prompts: list[str], references: list[str]
    ) -> list[Generation]:
        keys = [self._key(d, prompts, references) for d in model_dirs]
        found = {
            k: json.loads((self.cache / k).read_text()) for k in keys if (self.cache / k).is_file()
        }
        missing = [(d, k) for d, k in zip(model_dirs, keys, strict=True) if k not in found]
        if missing:
            results = self._run([d for d, _ in missing], prompts, references)
            self.cache.mkdir(parents=True, exist_ok=True)
            for (_, key), result in zip(missing, results, strict=True):
                (self.cache / key).write_text(json.dumps(result))
                found[key] = result
        return [
            Generation(
                found[k]["outputs"], found[k]["nll"], found[k]["latency_ms"], found[k]["seconds"]
            )
            for k in keys
        ]

    def _run(
        self, model_dirs: list[str], prompts: list[str], references: list[str]
    ) -> list[dict[str, object]]:
        s = self.settings
        request = {
            "model_dirs": model_dirs,
            "prompts": prompts,
            "references": references,
            "backend": s.backend,
            "max_new_tokens": s.max_new_tokens,
            "max_model_len": s.max_model_len,
            "kv_cache_mib": s.kv_cache_mib,
            "load_test_requests": s.load_test_requests,
        }
        with tempfile.TemporaryDirectory(prefix="llmops-eval-") as tmp:
            req, res = Path(tmp) / "request.json", Path(tmp) / "result.json"
            req.write_text(json.dumps(request))
            try:
                done = subprocess.run(
                    [sys.executable, "-m", "services.evaluation.adapters.generate", req, res],
                    capture_output=True,
                    timeout=s.generation_timeout_s,
                    check=False,
                )
            except subprocess.TimeoutExpired:
                raise GenerationError(
                    f"generation on {model_dirs} ran past {s.generation_timeout_s} s"
                ) from None
            if done.returncode != 0 or not res.exists():
                tail = done.stderr.decode(errors="replace")[-2000:]
                raise GenerationError(f"generation on {model_dirs} failed: {tail}")
            results: list[dict[str, object]] = json.loads(res.read_text())["results"]
            return results


class ModelDirs:
    """Local directories for registered versions: shared-disk dirs, unpacked tarballs, or the
    bootstrap model (built the way serving builds it: same code, same bytes)."""

    def __init__(self, settings: EvaluationSettings, artifacts: ArtifactStore) -> None:
        self.settings = settings
        self.artifacts = artifacts
        self.root = Path(settings.data_dir) / "evaluation" / "models"

    def resolve(self, artifact_json: str | None, name: str, version: str) -> str:
        if artifact_json is None:
            if version == "bootstrap" and name == self.settings.bootstrap_model:
                return str(
                    self.settings.bootstrap_path or ensure_tiny_model(self.root / "bootstrap")
                )
            raise FileNotFoundError(f"{name} {version} has no weights in the registry")
        artifact = ClaimCheck.model_validate_json(artifact_json)
        path = Path(artifact.uri.removeprefix("file://"))
        if artifact.media_type == MODEL_DIR_MEDIA_TYPE or path.is_dir():
            if not is_model_dir(path):
                raise FileNotFoundError(f"{path} is not a model directory")
            return str(path)
        target = self.root / artifact.sha256
        if not is_model_dir(target):
            tarball = self.artifacts.fetch_to(artifact, self.root / "tarballs")
            staging = Path(tempfile.mkdtemp(prefix=".unpack-", dir=self.root))
            with tarfile.open(tarball) as tar:
                tar.extractall(staging, filter="data")
            inner = next((p for p in [staging, *staging.iterdir()] if is_model_dir(p)), None)
            if inner is None:
                raise FileNotFoundError(f"{artifact.uri} holds no model directory")
            inner.rename(target)
        return str(target)
