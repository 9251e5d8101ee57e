"""``python -m services.training.trial SPEC.json``: one trial as its own program.

The entry point for data-parallel launches on GPU hosts (``accelerate launch`` or
``torchrun`` start it once per GPU; Hugging Face's Trainer finds the distributed
environment by itself). SPEC.json: ``{"spec": RunSpec, "examples": "examples.jsonl",
"base": path, "work_dir": dir, "checkpoint_steps": 20, "progress_every": 5}``. Rank 0
prints progress and the result as JSON lines.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict
from pathlib import Path

from services.training.domain.data import split_examples
from services.training.domain.spec import RunSpec
from services.training.domain.trainer import train_trial
from services.training.ports import Progress
from shared.datasets import LabeledExample


def main(path: str) -> None:
    job = json.loads(Path(path).read_text())
    spec = RunSpec.model_validate(job["spec"])
    lines = Path(job["examples"]).read_text().splitlines()
    examples = [LabeledExample.model_validate_json(line) for line in lines if line.strip()]
    splits = split_examples(examples, spec.task, spec.exclude_records)
    rank0 = os.environ.get("RANK", "0") == "0"

    def report(progress: Progress) -> None:
        if rank0:
            print(json.dumps({"progress": asdict(progress)}), flush=True)

    result = train_trial(
        spec,
        spec.hyperparameters,
        splits,
        job["base"],
        Path(job["work_dir"]),
        sink=report,
        checkpoint_steps=int(job.get("checkpoint_steps", 20)),
        progress_every=int(job.get("progress_every", 5)),
    )
    if rank0:
        print(json.dumps({"model_dir": str(result.model_dir), "metrics": result.metrics}))


if __name__ == "__main__":
    main(sys.argv[1])
