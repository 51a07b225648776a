"""Query side: encode the query once per retriever and ask the index for one fused list."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from pipelines.embed import Embedder
from pipelines.errors import PermanentError
from pipelines.index import SUMMARY, Index, Kind, Where
from pipelines.lexical import Bm25Encoder
from schemas.search import Mode, Scope, SearchHit, SearchRequest, tenant_refusal

GROUP_OVERFETCH = 5  # chunks fetched per requested document when grouping


def _iso(d: datetime | None) -> str | None:
    return d.isoformat() if d else None


_KINDS: dict[Scope, Kind] = {Scope.chunks: "chunk", Scope.summaries: "summary", Scope.all: None}


def where(req: SearchRequest) -> Where:
    """The request's filters as one index filter (tenant included when given; the scope picks point kinds)."""
    equals = dict(req.filters)
    for name in ("tenant", "doc_id", "file_type"):
        if getattr(req, name):
            equals[name] = getattr(req, name)
    if req.prefix:
        equals["prefixes"] = req.prefix
    ranges = {
        f: (_iso(lo), _iso(hi))
        for f, lo, hi in (
            ("created_at", req.created_after, req.created_before),
            ("updated_at", req.updated_after, req.updated_before),
        )
        if lo or hi
    }
    return Where(equals=equals, ranges=ranges, kind=_KINDS[req.scope])


def search(
    index: Index, embedder: Embedder, bm25: Bm25Encoder, req: SearchRequest, tenants: Sequence[str] = ()
) -> list[SearchHit]:
    """Hybrid, dense or lexical hits; ``tenants``: the tenants this sluice serves (one must be named)."""
    if refusal := tenant_refusal(tenants, req.scoped_tenant):
        raise PermanentError(refusal)
    dense = embedder.embed([req.q])[0] if req.mode in (Mode.hybrid, Mode.dense) else None
    sparse = bm25.query(req.q) if req.mode in (Mode.hybrid, Mode.lexical) else None
    limit = req.k * GROUP_OVERFETCH if req.group_by_document else req.k
    found = index.query(dense, sparse, limit, where(req))
    hits: list[SearchHit] = []
    seen: set[str] = set()
    for f in found:
        doc_id = f.payload["doc_id"]
        if req.group_by_document and doc_id in seen:
            continue
        seen.add(doc_id)
        hits.append(
            SearchHit(
                doc_id=doc_id,
                source=f.payload.get("source", ""),
                key=f.payload.get("key", ""),
                title=f.payload.get("title"),
                section=f.payload.get("section"),
                page=f.payload.get("page"),
                position=f.payload.get("position", 0),
                text=f.payload.get("text", ""),
                score=f.score,
                retrievers=list(f.retrievers),
                kind="summary" if f.payload.get("kind") == SUMMARY else "chunk",
                summary_method=f.payload.get("summary_method"),
            )
        )
    return hits[: req.k]
