from __future__ import annotations

from pathlib import Path

import pytest

from shared.modelkit import TinyModelSpec, build_tiny_model, dir_digest, ensure_tiny_model

pytestmark = pytest.mark.unit


def test_tiny_model_loads_in_transformers_with_a_chat_template(tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    spec = TinyModelSpec(hidden_size=64, intermediate_size=128, vocab_size=300)
    path = build_tiny_model(tmp_path / "m", ["alpha beta gamma", "delta epsilon"], spec)
    tokenizer = AutoTokenizer.from_pretrained(path)
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )
    assert prompt.endswith("<|assistant|>\n")
    assert "<|user|>\nhi<|end|>" in prompt
    model = AutoModelForCausalLM.from_pretrained(path)
    assert model.config.hidden_size == 64
    assert model.config.num_hidden_layers == 2
    ids = tokenizer("alpha beta", return_tensors="pt").input_ids
    assert model.generate(ids, max_new_tokens=3, do_sample=False).shape[1] == ids.shape[1] + 3


def test_same_inputs_same_digest_and_cache(tmp_path: Path) -> None:
    spec = TinyModelSpec(hidden_size=64, intermediate_size=128, vocab_size=300)
    a = build_tiny_model(tmp_path / "a", ["x y z"], spec)
    b = build_tiny_model(tmp_path / "b", ["x y z"], spec)
    assert dir_digest(a)[0] == dir_digest(b)[0]
    before = (a / "model.safetensors").stat().st_mtime_ns
    assert ensure_tiny_model(a) == a
    assert (a / "model.safetensors").stat().st_mtime_ns == before
