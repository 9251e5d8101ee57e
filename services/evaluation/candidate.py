"""A small "trained" candidate without the training service, for the demo and the tests.

The tiny bootstrap model (shared.modelkit) fine-tuned for a few dozen steps (plain torch,
full weights) to answer ``prompt -> completion`` on the given rows.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from shared.modelkit import is_model_dir


def fine_tune(base: Path, target: Path, rows: Sequence[dict[str, Any]], steps: int = 40) -> Path:
    """Write the fine-tuned model to ``target`` (kept if it is there already)."""
    if is_model_dir(target):
        return target
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base, dtype="float32")
    texts = [r["prompt"] + r["completion"] + tokenizer.eos_token for r in rows]
    batch = tokenizer(texts, return_tensors="pt", padding=True)
    labels = batch.input_ids.clone()
    labels[batch.attention_mask == 0] = -100
    for i, row in enumerate(rows):  # learn the answer, not the prompt
        labels[i, : len(tokenizer(row["prompt"]).input_ids)] = -100
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a shared machine: one thread wastes less time waiting
    try:
        optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
        model.train()
        for _ in range(steps):
            model(**batch, labels=labels).loss.backward()
            optimizer.step()
            optimizer.zero_grad()
    finally:
        torch.set_num_threads(threads)
    staging = target.with_name(f".{target.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging, safe_serialization=True)
    tokenizer.save_pretrained(staging)
    staging.rename(target)
    return target
