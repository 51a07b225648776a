import numpy as np


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
