import shutil

import numpy as np
import pytest

from pipelines.embed import Embedder
from pipelines.onnx_model import INT8_MIN_COSINE, graph_path, int8_path


def test_vectors_match_sentence_transformers_encode(embedder):
    texts = ["short", "a somewhat longer sentence about reservoirs and sand filters " * 3, "x " * 400, "mid length text"]
    ours = embedder.embed(texts)
    reference = embedder.model.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
    assert ours.shape == (4, 384)
    cosine = np.sum(ours * reference, axis=1)
    assert np.all(cosine > 1 - 1e-4)
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)


def test_empty_input(embedder):
    assert embedder.embed([]).shape == (0, 384)


TEXTS = [
    "short",
    "  leading and trailing spaces  ",
    "a somewhat longer sentence about reservoirs and sand filters " * 3,
    "x " * 400,  # beyond the 256-piece window: truncated the same way
    "Überschrift: Kläranlage, café, naïve — ümlauts and dashes",
]


def _reference(embedder: Embedder, texts: list[str]) -> np.ndarray:
    return embedder.model.encode(texts, normalize_embeddings=True, convert_to_numpy=True)


def test_onnx_export_from_installed_weights_matches_torch(tmp_path, embedder):
    onnx = Embedder(backend="onnx", cache=tmp_path, threads=1)
    vectors = onnx.embed(TEXTS)
    assert onnx.backend == "onnx"
    assert graph_path(tmp_path).is_file()  # exported once, reused by every later process
    assert np.all(np.sum(vectors * _reference(embedder, TEXTS), axis=1) > 1 - 1e-4)


def test_torch_backend_matches_encode(embedder):
    torch_embedder = Embedder(backend="torch")
    assert torch_embedder.backend == "torch"
    vectors = torch_embedder.embed(TEXTS)
    assert np.all(np.sum(vectors * _reference(embedder, TEXTS), axis=1) > 1 - 1e-4)


def test_damaged_cached_graph_is_exported_again(tmp_path, embedder):
    path = graph_path(tmp_path)
    path.write_bytes(b"not an onnx graph")  # e.g. a copy cut short by a full disk
    onnx = Embedder(backend="onnx", cache=tmp_path)
    vectors = onnx.embed(TEXTS[:2])
    assert onnx.backend == "onnx"
    assert path.stat().st_size > 1_000_000
    assert np.all(np.sum(vectors * _reference(embedder, TEXTS[:2]), axis=1) > 1 - 1e-4)


def test_int8_backend_quantises_the_export_into_a_space_of_its_own(tmp_path, embedder):
    embedder.embed(["x"])  # the session's fp32 export, copied rather than exported again
    shutil.copy(graph_path(embedder.cache), graph_path(tmp_path))
    int8_path(graph_path(tmp_path)).write_bytes(b"cut short")  # a damaged copy is rebuilt, not used
    int8 = Embedder(backend="onnx-int8", cache=tmp_path, threads=1)
    vectors = int8.embed(TEXTS)
    assert (int8.backend, int8.space, embedder.space) == ("onnx", "all-MiniLM-L6-v2-int8", "all-MiniLM-L6-v2")
    assert int8_path(graph_path(tmp_path)).stat().st_size > 1_000_000  # rebuilt over the damaged file
    cosine = np.sum(vectors * _reference(embedder, TEXTS), axis=1)
    assert np.all(cosine > INT8_MIN_COSINE) and np.any(cosine < 1 - 1e-4)  # close, yet really other vectors


def test_unknown_backend_is_refused():
    with pytest.raises(ValueError, match="unknown embedding backend"):
        Embedder(backend="tensorflow")  # type: ignore[arg-type]
