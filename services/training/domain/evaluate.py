"""A quick held-out score for SFT runs: greedy exact match of the completion."""

from __future__ import annotations

from typing import Any

from shared.datasets import LabeledExample


def exact_match(
    model: Any, tokenizer: Any, examples: list[LabeledExample], batch: int = 32
) -> float:
    """Share of examples whose greedy continuation starts with the expected completion."""
    import torch

    if not examples:
        return 0.0
    model.eval()
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    hits = 0
    try:
        for start in range(0, len(examples), batch):
            chunk = examples[start : start + batch]
            targets = [(e.completion or "").strip() for e in chunk]
            longest = max(len(tokenizer(t).input_ids) for t in targets) + 2
            encoded = tokenizer([e.prompt for e in chunk], return_tensors="pt", padding=True)
            with torch.no_grad():
                out = model.generate(
                    **encoded,
                    max_new_tokens=longest,
                    do_sample=False,
                    pad_token_id=tokenizer.pad_token_id,
                )
            texts = tokenizer.batch_decode(
                out[:, encoded.input_ids.shape[1] :], skip_special_tokens=True
            )
            hits += sum(t.strip().startswith(g) for t, g in zip(texts, targets, strict=True))
    finally:
        tokenizer.padding_side = side
    return hits / len(examples)
