"""BM25 sparse vectors: Qdrant's own BM25 model, so Edge and server score alike.

Query and document sides must be encoded by the same configuration; the IDF
half is applied inside Qdrant by the sparse vector's IDF modifier.
"""

from __future__ import annotations

from functools import cached_property

from pipelines.index import Sparse


class Bm25Encoder:
    def __init__(self, language: str = "english", k: float = 1.2, b: float = 0.75, avg_len: float = 150.0) -> None:
        self.language, self.k, self.b, self.avg_len = language, k, b, avg_len

    @cached_property
    def _model(self):  # type: ignore[no-untyped-def]
        import qdrant_edge as q

        return q.Bm25(q.Bm25Config(k=self.k, b=self.b, avg_len=self.avg_len, language=self.language))

    def document(self, text: str) -> Sparse:
        v = self._model.embed_document(text)
        return Sparse(list(v.indices), list(v.values))

    def query(self, text: str) -> Sparse:
        v = self._model.embed_query(text)
        return Sparse(list(v.indices), list(v.values))
