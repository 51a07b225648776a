"""Graph reads for the query worker: entity look-up, detail, paths, communities, and the
search modes ``graph`` and ``mix``.

The graph knows chunk ids only; texts and filterable fields come from the
index payloads, so a graph hit obeys the same filters (tenant included) as a
hybrid hit. ``mix`` fuses both rankings by reciprocal rank.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pipelines.errors import PermanentError
from pipelines.graph import KnowledgeGraph, dumps_canonical, rrf
from pipelines.graph_store import GraphSet
from pipelines.index import Index, Where
from schemas.graph import ChunkRef, EntityDetail
from schemas.search import SearchHit

OVERFETCH = 4  # graph candidates per requested hit, before filters
GROUP_OVERFETCH = 5  # and per requested document when grouping (as pipelines/search.py)


def _when(value: str | None) -> datetime | None:
    if not value:
        return None
    d = datetime.fromisoformat(value)
    return d if d.tzinfo else d.replace(tzinfo=UTC)


def matches(payload: dict[str, Any], where: Where | None) -> bool:
    """The index's filter semantics, applied to one payload (arrays match on any element)."""
    if not where:
        return True
    for name, want in where.equals.items():
        have = payload.get(name)
        if not (want in have if isinstance(have, list) else have == want):
            return False
    for name, (lo, hi) in where.ranges.items():
        at = _when(payload.get(name))
        if at is None or (lo and at < _when(lo)) or (hi and at > _when(hi)):  # type: ignore[operator]
            return False
    return True


def chunk_payload(index: Index, ref: ChunkRef) -> dict[str, Any] | None:
    found = list(index.payloads({"doc_id": ref.doc_id, "chunk_hash": ref.chunk_hash}))
    return min(found, key=lambda p: p.get("position", 0)) if found else None


def fill(index: Index, refs: list[ChunkRef]) -> list[ChunkRef]:
    """Supporting chunks with their document key, position and text (dropped if no longer indexed)."""
    out = []
    for ref in refs:
        p = chunk_payload(index, ref)
        if p:
            out.append(ref.model_copy(update={"key": p.get("key"), "position": p.get("position"), "text": p.get("text")}))
    return out


def _hit(p: dict[str, Any], score: float, retrievers: list[str]) -> SearchHit:
    return SearchHit(
        doc_id=p["doc_id"], source=p.get("source", ""), key=p.get("key", ""), title=p.get("title"),
        section=p.get("section"), page=p.get("page"), position=p.get("position", 0), text=p.get("text", ""),
        score=score, retrievers=retrievers,
    )


def graph_hits(
    kg: KnowledgeGraph, index: Index, q: str, k: int, where: Where | None, hops: int = 1, group_by_document: bool = False
) -> list[SearchHit]:
    """Chunks supporting the query's entities and their neighbours within ``hops``; with
    ``group_by_document`` only each document's best chunk (more candidates are walked for it)."""
    hits: list[SearchHit] = []
    seen: set[str] = set()
    depth = k * OVERFETCH * (GROUP_OVERFETCH if group_by_document else 1)
    for cid, score in kg.search(q, hops=hops, k=depth):
        doc_id, chunk_hash = cid.split(":", 1)
        if group_by_document and doc_id in seen:
            continue
        p = chunk_payload(index, ChunkRef(doc_id=doc_id, chunk_hash=chunk_hash))
        if p and matches(p, where):
            hits.append(_hit(p, score, ["graph"]))
            seen.add(doc_id)
        if len(hits) == k:
            break
    return hits


def best_per_document(hits: list[SearchHit]) -> list[SearchHit]:
    """The first (best) hit of each document, in rank order."""
    best: dict[str, SearchHit] = {}
    for h in hits:
        best.setdefault(h.doc_id, h)
    return list(best.values())


def mix(graph: list[SearchHit], hybrid: list[SearchHit], k: int, group_by_document: bool = False) -> list[SearchHit]:
    """Reciprocal-rank fusion of graph and hybrid hits; a chunk found by both keeps both retrievers.
    With ``group_by_document`` the fused list keeps each document's best hit only."""
    ident: dict[str, SearchHit] = {}
    for h in graph + hybrid:
        key = f"{h.doc_id}:{h.position}"
        seen = ident.get(key)
        ident[key] = h if seen is None else seen.model_copy(
            update={"retrievers": sorted(set(seen.retrievers) | set(h.retrievers))}
        )
    fused = rrf([[f"{h.doc_id}:{h.position}" for h in graph], [f"{h.doc_id}:{h.position}" for h in hybrid]])
    hits = [ident[key].model_copy(update={"score": score}) for key, score in fused]
    return (best_per_document(hits) if group_by_document else hits)[:k]


def resolve(kg: KnowledgeGraph, name: str) -> str | None:
    """An entity id, or the best match for a name ("Acme Inc." finds "acme")."""
    if name in kg.nodes:
        return name
    found = kg.lookup(name, 1)
    return found[0][0] if found else None


def run(gs: GraphSet, index: Index, op: str, params: dict[str, Any]) -> Any:
    """One graph read, as JSON-ready data; None where the thing asked for does not exist."""
    tenant = params.get("tenant")
    with gs.lock:
        kg = gs.graph(tenant)
        if op == "entities":
            return [kg.entity(key, score).model_dump() for key, score in kg.lookup(params["q"], params.get("k", 10))]
        if op == "entity":
            key = resolve(kg, params["id"])
            if key is None:
                return None
            relations = [r.model_copy(update={"chunks": fill(index, r.chunks)})
                         for r in kg.relations_of(key, params.get("limit", 25))]
            detail = EntityDetail(entity=kg.entity(key), neighbours=kg.neighbours(key, params.get("limit", 25)),
                                  relations=relations, chunks=fill(index, kg.chunks_of(key, params.get("chunks", 10))))
            return detail.model_dump()
        if op == "path":
            a, b = resolve(kg, params["from"]), resolve(kg, params["to"])
            path = kg.path(a, b) if a and b else None
            if path is None:
                return None
            steps = [s.model_copy(update={"chunks": fill(index, s.chunks)}) for s in path.steps]
            return path.model_copy(update={"steps": steps}).model_dump()
        if op == "stats":
            return {**kg.stats().model_dump(), "load_seconds": round(gs.load_seconds, 3)}
        if op == "canonical":
            return dumps_canonical(kg)
    if op == "communities":
        return [c.model_dump() for c in gs.communities(tenant)[: params.get("limit", 50)]]
    if op == "verify":
        return verify(gs, index)
    raise PermanentError(f"unknown graph operation {op!r}")


def verify(gs: GraphSet, index: Index) -> dict[str, Any]:
    """Is the live graph what a rebuild from the stored contributions gives, for exactly the indexed versions?"""
    with gs.lock:
        stored = list(gs.store.load())
        live = {part: dumps_canonical(kg) for part, kg in gs.graphs.items()}
    rebuilt: dict[str, KnowledgeGraph] = {}
    for c in stored:
        rebuilt.setdefault(gs.partition(c.tenant), KnowledgeGraph()).add(c)
    same = all(live.get(p, dumps_canonical(KnowledgeGraph())) == dumps_canonical(kg) for p, kg in rebuilt.items())
    same = same and all(p in rebuilt or dumps_canonical(KnowledgeGraph()) == v for p, v in live.items())
    indexed = {d: info.get("version") for d, info in index.documents().items()}
    graphed = {c.doc_id: c.version for c in stored}
    return {"rebuilt_equals_live": same, "versions_match_index": graphed == indexed,
            "documents": len(graphed), "indexed": len(indexed)}
