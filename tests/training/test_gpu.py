"""Scale-out: the same trial, data parallel over every GPU of the host (torchrun).

Marked ``gpu``: the CI machine has no GPU, so this is skipped there. On an NVIDIA host it
launches ``services.training.trial`` once per GPU through torchrun (what
``accelerate launch --config_file services/training/accelerate/multi_gpu.yaml`` does) and
checks that rank 0 saved a model that learned the task.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from services.training import synthetic
from services.training.domain.spec import build_spec
from shared.modelkit import ensure_tiny_model

pytestmark = pytest.mark.gpu


def test_trial_runs_data_parallel_on_every_gpu(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no NVIDIA GPU on this machine: the data-parallel launch needs one")
    rows = synthetic.records()
    examples = tmp_path / "examples.jsonl"
    examples.write_text("".join(json.dumps(r) + "\n" for r in rows))
    base = ensure_tiny_model(tmp_path / "base", [r["prompt"] + r["completion"] for r in rows])
    spec = build_spec(
        model_name="m", dataset="d", dataset_version="v", base_model=str(base),
        version_task="classification", task=None, lora=False,
        hyperparameters={"max_steps": 60}, trials=0, sampler="tpe", space={},
    )  # fmt: skip
    job = tmp_path / "job.json"
    job.write_text(
        json.dumps(
            {
                "spec": spec.model_dump(mode="json"),
                "examples": str(examples),
                "base": str(base),
                "work_dir": str(tmp_path / "run"),
            }
        )
    )
    gpus = torch.cuda.device_count()
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={gpus}",
         "-m", "services.training.trial", str(job)],
        capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert Path(result["model_dir"], "model.safetensors").is_file()
    assert result["metrics"]["eval_exact_match"] > 0.6
