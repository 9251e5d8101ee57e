"""Training throughput: the service's path vs a plain TRL SFTTrainer, same model, data, run.

Both sides load the tiny built-in Llama, fine-tune it with TRL's SFTTrainer on the same
synthetic classification version and save the model. The service's path adds what the
service does around TRL: progress every 5 steps committed as TrainingProgressed events
through the outbox (SQLite), checkpoints every 20 steps, lineage of the splits. Rounds
are interleaved and the median is reported (the machine is shared). Tokens/s = input
tokens seen / wall time of load + train + save.

    .venv/bin/python benchmarks/train.py [--steps 60] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from sqlmodel import Session

from benchmarks.common import median, write_result
from services.training import synthetic
from services.training.domain.data import Splits, as_rows, split_examples
from services.training.domain.spec import build_spec
from services.training.domain.trainer import load_base, train_trial
from services.training.ports import Progress
from shared.bus.store import UnitOfWork
from shared.datasets import LabeledExample
from shared.events import TrainingProgressed
from shared.modelkit import ensure_tiny_model
from shared.storage import make_engine

BATCH = 16


def plain_trl(base: str, splits: Splits, out: Path, steps: int) -> int:
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    model, tokenizer = load_base(base)
    args = SFTConfig(
        output_dir=str(out),
        max_steps=steps,
        per_device_train_batch_size=BATCH,
        learning_rate=3e-3,
        lr_scheduler_type="constant",
        seed=0,
        save_strategy="no",
        report_to=[],
        disable_tqdm=True,
        logging_steps=steps,
        include_num_input_tokens_seen="all",
        max_length=128,
        bf16=False,
    )
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(as_rows(splits.train, "sft")),
        processing_class=tokenizer,
    )
    trainer.train()
    trainer.model.save_pretrained(out / "model")
    tokenizer.save_pretrained(out / "model")
    return int(trainer.state.num_input_tokens_seen)


def service_path(base: str, splits: Splits, out: Path, steps: int, db: str) -> int:
    spec = build_spec(
        model_name="bench", dataset="d", dataset_version="v", base_model=base,
        version_task="classification", task=None, lora=False,
        hyperparameters={"max_steps": steps, "per_device_train_batch_size": BATCH},
        trials=0, sampler="tpe", space={},
    )  # fmt: skip
    engine = make_engine(db)
    run_id = uuid.uuid4()
    tokens = [0]

    def emit(progress: Progress) -> None:  # what the run queue does: one outbox commit
        with Session(engine) as session:
            UnitOfWork(session, "training").emit(
                TrainingProgressed(
                    run_id=run_id, step=progress.step, total_steps=progress.total_steps,
                    loss=progress.loss, tokens_per_s=progress.tokens_per_s, eta_s=progress.eta_s,
                )
            )  # fmt: skip
            session.commit()

    train_trial(
        spec, spec.hyperparameters, splits, base, out, sink=emit,
        checkpoint_steps=20, progress_every=5,
    )  # fmt: skip
    _ = splits.record_ids, splits.subject_ids  # lineage, as ModelTrained carries it
    state = max(out.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    import json

    tokens[0] = json.loads((state / "trainer_state.json").read_text())["num_input_tokens_seen"]
    engine.dispose()
    return tokens[0]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=3)
    opts = parser.parse_args()
    rows = synthetic.records({"train": 240})
    splits = split_examples([LabeledExample.model_validate(r) for r in rows], "sft")
    results: dict[str, list[float]] = {"plain TRL SFTTrainer (peer)": [], "training service": []}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        base = str(ensure_tiny_model(root / "base", splits.texts()))
        for r in range(opts.rounds):
            for name, rates in results.items():
                out = root / f"{r}-{name[:5]}"
                started = time.perf_counter()
                if name.startswith("plain"):
                    tokens = plain_trl(base, splits, out, opts.steps)
                else:
                    tokens = service_path(base, splits, out, opts.steps, f"sqlite:///{root}/db-{r}")
                rate = tokens / (time.perf_counter() - started)
                rates.append(rate)
                print(f"round {r}: {name}: {rate:,.0f} tokens/s", flush=True)
    peer = median(results["plain TRL SFTTrainer (peer)"])
    lines = [
        f"{opts.steps} optimizer steps of batch {BATCH} on {len(splits.train)} synthetic "
        "classification examples, tiny built-in Llama (2 layers, hidden 128), float32 on CPU; "
        f"medians of {opts.rounds} interleaved rounds. Tokens/s = input tokens / wall time of "
        "load + train + save. The service adds TrainingProgressed every 5 steps (outbox commit, "
        "SQLite) and a checkpoint every 20 steps.",
        "",
        "| path | tokens/s (median) | rounds | ratio vs TRL |",
        "|---|---|---|---|",
    ]
    for name, rates in results.items():
        rounds = ", ".join(f"{x:,.0f}" for x in rates)
        lines.append(f"| {name} | {median(rates):,.0f} | {rounds} | {median(rates) / peer:.2f} |")
    lines += ["", "Goal: the service's path >= 0.95x plain TRL."]
    path = write_result("train", "Training: the service's path vs plain TRL", "\n".join(lines))
    print(path.read_text())


if __name__ == "__main__":
    main()
