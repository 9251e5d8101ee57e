"""LoRA adapters on one real vLLM engine, through the worker's own pool, control and inference.

Run as a script (vLLM starts workers with spawn): ``python -m tests.serving.lora_check WORKDIR
BASE_DIR``. It makes two PEFT adapters on the base (random, different seeds: different greedy
answers), the answers transformers+peft give for them, then drives the worker's code: adapter
canary on the base, two adapters side by side, promotion, rollback. Prints one JSON line
``LORA {...}`` with what each request was answered by and the engine's identity at each step.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

PROMPT = "The agent answers"
TOKENS = 6


def make_adapter(base: Path, target: Path, seed: int) -> Path:
    """A random LoRA (B not zero) strong enough to change the greedy answer."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    if (target / "adapter_config.json").is_file():
        return target
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base, dtype="float32")
    config = LoraConfig(
        r=8,
        lora_alpha=16,
        target_modules=["q_proj", "v_proj", "o_proj", "down_proj"],
        init_lora_weights=False,
    )
    peft_model = get_peft_model(model, config)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.mul_(20.0)
    peft_model.save_pretrained(target)
    return target


def hf_answer(base: Path, adapter: Path | None) -> str:
    """The greedy answer of transformers (+ peft): what vLLM must reproduce."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base, dtype="float32")
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter)
    ids = tokenizer(PROMPT, return_tensors="pt").input_ids
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=TOKENS, do_sample=False, min_new_tokens=TOKENS)
    return str(tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True))


class ListSink:
    async def send(self, topic: str, event: Any, key: str) -> None:
        return None

    async def flush(self) -> None:
        return None


async def drive(work: Path, base: Path, adapters: dict[str, Path]) -> dict[str, Any]:
    from services.serving.worker.adapters.model_source import ModelSource
    from services.serving.worker.adapters.vllm_engine import VllmLoader
    from services.serving.worker.config import WorkerSettings
    from services.serving.worker.control import ModelControl
    from services.serving.worker.engines import EnginePool
    from services.serving.worker.inference import InferenceService
    from services.serving.worker.routing import CHALLENGER, ModelTable, Version
    from shared.events import ClaimCheck, ModelPromoted
    from shared.events.serving import InferenceRequested
    from shared.modelkit import MODEL_DIR_MEDIA_TYPE
    from shared.storage import ArtifactStore

    settings = WorkerSettings(
        max_loras=2, max_model_len=256, kv_cache_mib=64, max_in_flight=8, data_dir=work
    )
    table = ModelTable()
    pool = EnginePool(VllmLoader(settings), lookup=table.lookup)
    source = ModelSource(work / "models", ArtifactStore(str(work / "art")))
    control = ModelControl(table, pool, source)
    draws: list[float] = []  # one per request, in order: the canary's coin
    service = InferenceService(
        table, pool, ListSink(), worker_id="w", completed_topic="done", draw=lambda: draws.pop(0)
    )
    t0 = datetime.now(UTC)
    steps: list[dict[str, Any]] = []

    def promoted(version: str, seconds: int, **fields: Any) -> ModelPromoted:
        claim = ClaimCheck(
            uri=str(adapters[version]), sha256="0" * 64, size=1, media_type=MODEL_DIR_MEDIA_TYPE
        )
        return ModelPromoted(
            model_name="llmops-tiny",
            model_version=version,
            artifact=claim,
            occurred_at=t0 + timedelta(seconds=seconds),
            **fields,
        )

    async def ask(step: str, *at: float) -> None:
        """One request per draw, all at once (one batch in the engine)."""
        draws.extend(at)
        answers = await asyncio.gather(
            *(
                service.handle(
                    InferenceRequested(
                        request_id=f"{step}-{i}",
                        model="llmops-tiny",
                        prompt=PROMPT,
                        reply_to="replies",
                        sampling={
                            "max_tokens": TOKENS,
                            "temperature": 0.0,
                            "min_tokens": TOKENS,
                        },
                    )
                )
                for i in range(len(at))
            )
        )
        steps.append(
            {
                "step": step,
                "draws": at,
                "answers": [[a.model_version, a.alias, a.text, a.error] for a in answers],
                "engines": [id(e) for e in pool.engines().values()],
                "adapters": sorted(await _loras(pool)),
            }
        )

    await control.promote(Version("llmops-tiny", "bootstrap", str(base)), t0)
    await ask("base", 0.5)
    # an adapter as a canary over its base: 30 %
    await control.apply_promotion(promoted("a1", 1, alias=CHALLENGER, traffic_share=0.3))
    await ask("canary-a1", 0.1, 0.9, 0.2, 0.8)
    # a1 champion, a2 challenger: two adapters side by side, one batch
    await control.apply_promotion(promoted("a1", 2))
    await control.apply_promotion(promoted("a2", 3, alias=CHALLENGER, traffic_share=0.5))
    await ask("side-by-side", 0.2, 0.8, 0.4, 0.6)
    await control.apply_promotion(promoted("a2", 4))
    await ask("a2-champion", 0.5)
    await control.rollback("llmops-tiny", "a1", t0 + timedelta(seconds=5))
    await ask("rolled-back", 0.5)
    snapshot = ModelTable.from_dict(table.to_dict())
    await pool.close_all()
    return {
        "steps": steps,
        "restored": {
            k: [v.version for v in (r.champion, r.challenger) if v]
            for k, r in snapshot.routes.items()
        },
    }


async def _loras(pool: Any) -> set[int]:
    engines = list(pool.engines().values())
    return set(await engines[0].engine.list_loras()) if engines else set()


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    work, base = Path(sys.argv[1]), Path(sys.argv[2])
    adapters = {
        "a1": make_adapter(base, work / "a1", seed=1),
        "a2": make_adapter(base, work / "a2", seed=2),
    }
    expected = {"base": hf_answer(base, None)}
    expected |= {k: hf_answer(base, v) for k, v in adapters.items()}
    result = asyncio.run(drive(work, base, adapters))
    sys.stdout.write("LORA " + json.dumps({"expected": expected, **result}) + "\n")


if __name__ == "__main__":
    main()
