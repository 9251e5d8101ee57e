from __future__ import annotations

import dataclasses
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


def test_the_worker_tells_adapters_from_models_and_bases_by_their_weights(tmp_path: Path) -> None:
    import tarfile

    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from services.serving.worker.adapters.model_source import ModelSource
    from shared.events import ClaimCheck
    from shared.modelkit import MODEL_TAR_MEDIA_TYPE, is_adapter_dir
    from shared.storage import ArtifactStore

    spec = TinyModelSpec(hidden_size=64, intermediate_size=128, vocab_size=300)
    base = build_tiny_model(tmp_path / "base", ["x y z"], spec)
    copy = build_tiny_model(tmp_path / "copy", ["x y z"], spec)  # same weights, elsewhere
    other = build_tiny_model(tmp_path / "other", ["x y z"], dataclasses.replace(spec, seed=7))
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(base), LoraConfig(r=8, target_modules=["q_proj"])
    )
    model.save_pretrained(tmp_path / "adapter")
    assert is_adapter_dir(tmp_path / "adapter")
    store = ArtifactStore(str(tmp_path / "store"))
    with tarfile.open(tmp_path / "adapter.tar", "w") as tar:
        tar.add(tmp_path / "adapter", arcname="adapter")
    claim = store.put_file(tmp_path / "adapter.tar", MODEL_TAR_MEDIA_TYPE)
    source = ModelSource(tmp_path / "models", store)
    unpacked = source.resolve(claim)
    assert source.adapter_base(unpacked) == str(base)
    assert source.adapter_base(str(base)) is None
    assert source.same_model(str(base), str(base))
    assert source.same_model(str(base), str(copy))
    assert not source.same_model(str(base), str(other))
    assert not source.same_model("hub/name", str(base))
    assert source.resolve(ClaimCheck(uri=str(base), sha256="0" * 64, size=1)) == str(base)
