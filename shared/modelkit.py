"""Build a tiny Llama-architecture model and its BPE tokenizer locally, in Hugging Face format.

Nothing here downloads anything: the tokenizer is trained with ``tokenizers`` on the given
texts (or the platform's built-in text) and the weights are initialised from a seed. The
result loads in transformers and vLLM like any hub checkpoint; serving bootstraps from it and
training starts from it.

    path = build_tiny_model(data_dir / "models" / "base", texts)
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

MODEL_DIR_MEDIA_TYPE = "application/vnd.llmops.model-dir"  # claim check uri: a local directory
MODEL_TAR_MEDIA_TYPE = "application/x-tar"  # claim check: a tarball of the model dir

BOS, EOS, PAD, UNK = "<s>", "</s>", "<pad>", "<unk>"
SPECIAL_TOKENS = [PAD, UNK, BOS, EOS, "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]

# Jinja chat template: <|role|>\ncontent<|end|>\n ... then <|assistant|>\n for generation.
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + '<|end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)

BUILTIN_TEXT = """\
The platform ingests records, removes personal data, collects labels, versions datasets,
trains models, evaluates them against gates, promotes the best version and serves it.
Every service talks to the others only through Kafka topics that carry typed events.
A support ticket arrives: the customer cannot log in after the password reset.
The agent answers that the reset link expires after one hour and sends a new link.
Another ticket asks for an invoice copy; the agent attaches the invoice and closes it.
Models are served by vLLM workers behind a gateway that speaks the OpenAI API.
Feedback from users flows back to labeling; drift in the inputs asks for retraining.
Promotions switch the serving version live, and a rollback returns to the previous one.
The quick brown fox jumps over the lazy dog while the tokenizer learns its merges.
"""


@dataclass(frozen=True)
class TinyModelSpec:
    """Shape of the model; the defaults load in seconds and run fast on two CPU cores."""

    vocab_size: int = 512
    hidden_size: int = 128
    intermediate_size: int = 256
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    max_position_embeddings: int = 512
    seed: int = 0


def train_tokenizer(texts: Iterable[str], vocab_size: int = 512) -> object:
    """A byte-level BPE tokenizer (transformers' fast tokenizer) with the chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE(unk_token=UNK))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(list(texts) or [BUILTIN_TEXT], trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        additional_special_tokens=SPECIAL_TOKENS[4:],
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_tiny_model(
    out_dir: Path,
    texts: Iterable[str] | None = None,
    spec: TinyModelSpec | None = None,
    *,
    keep_existing: bool = False,
) -> Path:
    """Write config, weights (safetensors) and tokenizer to ``out_dir``; returns it.

    Written to a temporary sibling and renamed, so a crash never leaves half a model.
    Deterministic: the same texts and spec give the same files. ``keep_existing``: a
    complete model another process put at ``out_dir`` meanwhile is kept (it is the same
    one), never removed under a reader.
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    spec = spec or TinyModelSpec()
    out_dir = Path(out_dir)
    corpus = [t for t in (texts or []) if t.strip()] or BUILTIN_TEXT.splitlines()
    tokenizer = train_tokenizer(corpus, spec.vocab_size)
    config = LlamaConfig(
        vocab_size=len(tokenizer),  # type: ignore[arg-type]
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_hidden_layers,
        num_attention_heads=spec.num_attention_heads,
        num_key_value_heads=spec.num_key_value_heads,
        max_position_embeddings=spec.max_position_embeddings,
        bos_token_id=tokenizer.bos_token_id,  # type: ignore[attr-defined]
        eos_token_id=tokenizer.eos_token_id,  # type: ignore[attr-defined]
        pad_token_id=tokenizer.pad_token_id,  # type: ignore[attr-defined]
        tie_word_embeddings=True,
        dtype="float32",
    )
    torch.manual_seed(spec.seed)
    model = LlamaForCausalLM(config).float()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    staging.chmod(0o755)
    try:
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)  # type: ignore[attr-defined]
        (staging / "llmops_model.json").write_text(json.dumps({"spec": asdict(spec)}, indent=2))
        if keep_existing and is_model_dir(out_dir):
            return out_dir
        if out_dir.exists():
            shutil.rmtree(out_dir)
        try:
            staging.rename(out_dir)
        except OSError:  # another process renamed its copy there first
            if not (keep_existing and is_model_dir(out_dir)):
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return out_dir


def ensure_tiny_model(
    out_dir: Path, texts: Iterable[str] | None = None, spec: TinyModelSpec | None = None
) -> Path:
    """``build_tiny_model`` unless ``out_dir`` already holds a complete model (a cache)."""
    if is_model_dir(Path(out_dir)):
        return Path(out_dir)
    return build_tiny_model(out_dir, texts, spec, keep_existing=True)


def is_model_dir(path: Path) -> bool:
    return (path / "config.json").is_file() and (path / "tokenizer.json").is_file()


def is_adapter_dir(path: Path) -> bool:
    """A PEFT LoRA adapter (``save_pretrained`` of a peft model): config + weights."""
    return (path / "adapter_config.json").is_file() and any(
        (path / name).is_file() for name in ("adapter_model.safetensors", "adapter_model.bin")
    )


def adapter_base(path: Path) -> str:
    """The base model an adapter declares (``base_model_name_or_path``; "" if none)."""
    config = json.loads((Path(path) / "adapter_config.json").read_text())
    return str(config.get("base_model_name_or_path") or "")


def weights_digest(path: Path) -> str | None:
    """sha256 over a model dir's config and weight files (not its tokenizer or README):
    two copies of the same base model agree, wherever they live. None if not a model dir."""
    path = Path(path)
    if not (path / "config.json").is_file():
        return None
    digest = hashlib.sha256()
    names = ["config.json", *sorted(p.name for p in path.glob("*.safetensors"))]
    for name in names:
        digest.update(name.encode() + b"\0")
        with (path / name).open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def dir_digest(path: Path) -> tuple[str, int]:
    """sha256 over a directory's relative file names and bytes, and its total size."""
    digest = hashlib.sha256()
    total = 0
    for file in sorted(p for p in Path(path).rglob("*") if p.is_file()):
        digest.update(str(file.relative_to(path)).encode() + b"\0")
        with file.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
                total += len(block)
    return digest.hexdigest(), total
