"""BM25 sparse vectors: Qdrant's own BM25 model, so Edge and server score alike.

Query and document sides must be encoded by the same configuration; the IDF
half is applied inside Qdrant by the sparse vector's IDF modifier.

Tuned on CISI (see README, retrieval evaluation): English stemming and stop
words; ``k=2.0``, ``b=0.75`` and ``avg_len=60`` (a chunk holds ~61 BM25 tokens
after stop words there); and query terms weighted by their frequency in the
query, saturated like BM25's ``k3`` (Qdrant's ``embed_query`` counts every
term once, which throws away what a long, paragraph-sized question repeats).
A one-off term still weighs exactly 1, so short queries score as before.
"""

from __future__ import annotations

from functools import cached_property

from pipelines.index import Sparse


class Bm25Encoder:
    def __init__(
        self,
        language: str = "english",
        k: float = 2.0,
        b: float = 0.75,
        avg_len: float = 60.0,
        query_k: float = 8.0,
    ) -> None:
        self.language, self.k, self.b, self.avg_len, self.query_k = language, k, b, avg_len, query_k

    @cached_property
    def _model(self):  # type: ignore[no-untyped-def]
        import qdrant_edge as q

        return q.Bm25(q.Bm25Config(k=self.k, b=self.b, avg_len=self.avg_len, language=self.language))

    @cached_property
    def _query_model(self):  # type: ignore[no-untyped-def]
        """Same tokens as documents; weight ``tf * (k3 + 1) / (tf + k3)``, no length normalisation."""
        import qdrant_edge as q

        return q.Bm25(q.Bm25Config(k=self.query_k, b=0.0, language=self.language))

    def document(self, text: str) -> Sparse:
        v = self._model.embed_document(text)
        return Sparse(list(v.indices), list(v.values))

    def query(self, text: str) -> Sparse:
        v = self._query_model.embed_document(text)
        return Sparse(list(v.indices), list(v.values))
