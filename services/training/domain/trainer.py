"""One trial: a base model fine-tuned with TRL (SFT or DPO, full or LoRA), resumably.

Checkpoints land in ``work_dir/checkpoint-N`` every ``checkpoint_steps``; calling
:func:`train_trial` again with the same ``work_dir`` resumes from the last one (model,
optimizer, scheduler, RNG and data position), so a killed run ends where an unbroken one
would. The result is a Hugging Face model directory (merged, if LoRA) and metrics.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.training.domain.data import Splits, as_rows
from services.training.domain.evaluate import exact_match
from services.training.domain.spec import Hyperparameters, RunSpec, SpecError
from services.training.ports import Progress, ProgressSink, PruneCheck


@dataclass
class TrialResult:
    model_dir: Path
    adapter_dir: Path | None
    metrics: dict[str, float]
    history: list[dict[str, Any]] = field(default_factory=list)


def load_base(path: str) -> tuple[Any, Any]:
    """Model and tokenizer of a base (HF id or local dir); SpecError if it does not load."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype="float32")
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SpecError(f"base model {path!r} does not load: {reason}") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def _callback(trial: int, total: int, sink: ProgressSink, prune: PruneCheck | None) -> Any:
    from transformers import TrainerCallback

    class ProgressCallback(TrainerCallback):  # type: ignore[misc]
        def __init__(self) -> None:
            self.started = time.perf_counter()
            self.first_step = 0
            self.last = (time.perf_counter(), 0)

        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.started = time.perf_counter()
            self.first_step = state.global_step
            self.last = (self.started, state.num_input_tokens_seen or 0)

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
            logs = logs or {}
            if "loss" not in logs:
                return
            now = time.perf_counter()
            tokens = state.num_input_tokens_seen or 0
            elapsed = now - self.last[0]
            rate = (tokens - self.last[1]) / elapsed if elapsed > 0 else None
            self.last = (now, tokens)
            done = state.global_step - self.first_step
            per_step = (now - self.started) / done if done else None
            sink(
                Progress(
                    trial=trial,
                    step=state.global_step,
                    total_steps=total,
                    loss=float(logs["loss"]),
                    learning_rate=float(logs.get("learning_rate", 0.0)),
                    tokens_per_s=rate,
                    eta_s=per_step * (total - state.global_step) if per_step else None,
                )
            )

        def on_evaluate(
            self, args: Any, state: Any, control: Any, metrics: Any = None, **kw: Any
        ) -> None:
            loss = (metrics or {}).get("eval_loss")
            if loss is None:
                return
            sink(Progress(trial, state.global_step, total, eval_loss=float(loss)))
            if prune is not None:
                prune(state.global_step, float(loss))

    return ProgressCallback()


def _config(
    spec: RunSpec,
    *,
    params: Hyperparameters,
    work_dir: Path,
    checkpoint_steps: int,
    progress_every: int,
    has_eval: bool,
) -> Any:
    import torch
    from trl import DPOConfig, SFTConfig

    # mixed precision where the hardware has it (GPUs); plain float32 on CPUs
    bf16 = bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    common: dict[str, Any] = {
        "output_dir": str(work_dir),
        "max_steps": params.max_steps,
        "per_device_train_batch_size": params.per_device_train_batch_size,
        "per_device_eval_batch_size": params.per_device_train_batch_size,
        "gradient_accumulation_steps": params.gradient_accumulation_steps,
        "learning_rate": params.learning_rate,
        "weight_decay": params.weight_decay,
        "warmup_steps": params.warmup_steps,
        "lr_scheduler_type": params.lr_scheduler_type,
        "seed": params.seed,
        "data_seed": params.seed,
        "logging_steps": progress_every,
        "save_strategy": "steps",
        "save_steps": checkpoint_steps,
        "eval_strategy": "steps" if has_eval else "no",
        "eval_steps": params.eval_steps or checkpoint_steps,
        "report_to": [],
        "disable_tqdm": True,
        "include_num_input_tokens_seen": "all",
        "max_length": params.max_length,
        "dataloader_num_workers": 0,
        "bf16": bf16,
    }
    if spec.task == "dpo":
        return DPOConfig(**common, beta=params.beta)
    return SFTConfig(**common)


def train_trial(
    spec: RunSpec,
    params: Hyperparameters,
    splits: Splits,
    base_path: str,
    work_dir: Path,
    *,
    trial: int = 0,
    sink: ProgressSink,
    prune: PruneCheck | None = None,
    checkpoint_steps: int = 20,
    progress_every: int = 5,
) -> TrialResult:
    """Train (or resume) one trial in ``work_dir``; returns the saved model and metrics."""
    from datasets import Dataset
    from transformers.trainer_utils import get_last_checkpoint
    from trl import DPOTrainer, SFTTrainer

    model, tokenizer = load_base(base_path)
    work_dir.mkdir(parents=True, exist_ok=True)
    peft_config = None
    if spec.lora:
        from peft import LoraConfig

        peft_config = LoraConfig(
            r=params.lora_r,
            lora_alpha=params.lora_alpha,
            lora_dropout=params.lora_dropout,
            target_modules="all-linear",
            task_type="CAUSAL_LM",
        )
    train = Dataset.from_list(as_rows(splits.train, spec.task))
    has_eval = bool(splits.validation)
    evaluation = Dataset.from_list(as_rows(splits.validation, spec.task)) if has_eval else None
    args = _config(
        spec,
        params=params,
        work_dir=work_dir,
        checkpoint_steps=checkpoint_steps,
        progress_every=progress_every,
        has_eval=has_eval,
    )
    trainer_cls = DPOTrainer if spec.task == "dpo" else SFTTrainer
    trainer = trainer_cls(
        model=model,
        args=args,
        train_dataset=train,
        eval_dataset=evaluation,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=[_callback(trial, params.max_steps, sink, prune)],
    )
    last = get_last_checkpoint(str(work_dir)) if work_dir.exists() else None
    output = trainer.train(resume_from_checkpoint=last)
    metrics: dict[str, float] = {"train_loss": float(output.training_loss)}
    if has_eval:
        metrics["eval_loss"] = float(trainer.evaluate()["eval_loss"])
        if spec.task == "sft":  # a DPO eval loss is no language-model loss
            metrics["eval_perplexity"] = math.exp(min(metrics["eval_loss"], 50.0))
    return _save(spec, trainer, tokenizer, splits=splits, work_dir=work_dir, metrics=metrics)


def _save(
    spec: RunSpec,
    trainer: Any,
    tokenizer: Any,
    *,
    splits: Splits,
    work_dir: Path,
    metrics: dict[str, float],
) -> TrialResult:
    model = trainer.model
    adapter_dir = None
    if spec.lora:
        adapter_dir = work_dir / "adapter"
        model.save_pretrained(adapter_dir)
        tokenizer.save_pretrained(adapter_dir)
        model = model.merge_and_unload()
    model_dir = work_dir / "model"
    model.save_pretrained(model_dir, safe_serialization=True)
    tokenizer.save_pretrained(model_dir)
    model.generation_config.save_pretrained(model_dir)
    if spec.task == "sft" and splits.validation:
        metrics["eval_exact_match"] = exact_match(model, tokenizer, splits.validation[:200])
    history = [dict(entry) for entry in trainer.state.log_history]
    return TrialResult(model_dir, adapter_dir, metrics, history)
