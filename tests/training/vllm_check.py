"""Load model directories in vLLM (offline LLM, the engine serving uses) and answer a prompt.

Run as a script (vLLM starts workers with spawn): prints one JSON object, dir -> answer.
"""

from __future__ import annotations

import json
import os
import sys


def main() -> None:
    from vllm import LLM, SamplingParams

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    prompt, *dirs = sys.argv[1:]
    answers = {}
    for path in dirs:
        llm = LLM(
            model=path,
            dtype="float32",
            max_model_len=256,
            enforce_eager=True,
            kv_cache_memory_bytes=64 * 1024 * 1024,
            disable_log_stats=True,
        )
        out = llm.generate([prompt], SamplingParams(max_tokens=4, temperature=0.0))
        answers[path] = out[0].outputs[0].text
        del llm
    sys.stdout.write("ANSWERS " + json.dumps(answers) + "\n")


if __name__ == "__main__":
    main()
