"""Query side: encode the query once per retriever and ask the index for one fused list."""

from __future__ import annotations

from pipelines.embed import Embedder
from pipelines.index import Index
from pipelines.lexical import Bm25Encoder
from schemas.search import Mode, SearchHit, SearchRequest

RETRIEVERS = {Mode.hybrid: ["dense", "lexical"], Mode.dense: ["dense"], Mode.lexical: ["lexical"]}


def search(index: Index, embedder: Embedder, bm25: Bm25Encoder, req: SearchRequest) -> list[SearchHit]:
    dense = embedder.embed([req.q])[0] if req.mode in (Mode.hybrid, Mode.dense) else None
    sparse = bm25.query(req.q) if req.mode in (Mode.hybrid, Mode.lexical) else None
    must = {k: v for k, v in {"tenant": req.tenant, "doc_id": req.doc_id}.items() if v}
    found = index.query(dense, sparse, req.k, must or None)
    return [
        SearchHit(
            doc_id=f.payload["doc_id"],
            source=f.payload.get("source", ""),
            key=f.payload.get("key", ""),
            title=f.payload.get("title"),
            section=f.payload.get("section"),
            page=f.payload.get("page"),
            position=f.payload.get("position", 0),
            text=f.payload.get("text", ""),
            score=f.score,
            retrievers=RETRIEVERS[req.mode],
        )
        for f in found
    ]
