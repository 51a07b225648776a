"""The entity graph, kept exact under change (extraction: graph_extract.py; storage: graph_store.py).

Why contributions: every document adds a self-contained contribution (its
chunks' entity mentions). The graph keeps counters that are plain sums over
the contributions of the documents that exist, so an edit subtracts the old
contribution and adds the new one, and a delete subtracts it: whatever
sequence of changes happened, the graph equals the one built from scratch
over the surviving documents (tests/pipelines/test_graph.py checks this property).
Anything whose counters reach zero disappears with its last supporting chunk.

People appear only as the pseudonym tokens redaction left (``<PERSON_…>``),
so they link across documents without a name ever reaching the graph.

Typed relations (a model's validated structured output, pipelines/relations.py)
are part of the chunk they were stated in, inside the same contribution: they
are counted per (subject, predicate, object) and chunk, like everything else,
so they come and go with their document and the property above still holds.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import combinations, pairwise
from typing import Any, Literal

import networkx as nx

from pipelines.graph_extract import TOKEN_RE, entity_key, words
from schemas.graph import (
    ChunkEntities,
    ChunkRef,
    DocContribution,
    Entity,
    EntityRef,
    GraphPath,
    GraphStats,
    Neighbour,
    PathStep,
    Relation,
)

Triple = tuple[str, str, str]  # (subject key, predicate, object key)


# --------------------------------------------------------------------------- the graph

def _bump(counter: dict[str, int], key: str, delta: int) -> None:
    value = counter.get(key, 0) + delta
    if value:
        counter[key] = value
    else:
        counter.pop(key, None)


def _top(counter: dict[str, int]) -> str:
    """Most frequent key, ties broken alphabetically: independent of the order changes came in."""
    return min(counter.items(), key=lambda kv: (-kv[1], kv[0]))[0] if counter else ""


@dataclass(slots=True)
class _Node:
    mentions: int = 0
    types: dict[str, int] = field(default_factory=dict)
    aliases: dict[str, int] = field(default_factory=dict)
    chunks: dict[str, int] = field(default_factory=dict)  # "doc_id:chunk_hash" -> occurrences
    docs: dict[str, int] = field(default_factory=dict)
    dates: dict[str, int] = field(default_factory=dict)


def chunk_ref(chunk_id: str) -> ChunkRef:
    doc_id, chunk_hash = chunk_id.split(":", 1)
    return ChunkRef(doc_id=doc_id, chunk_hash=chunk_hash)


class KnowledgeGraph:
    """Entities and co-occurrence edges, as sums over per-document contributions."""

    def __init__(self) -> None:
        self.g = nx.Graph()  # edge data: weight (chunks where both occur), chunks {chunk id: n}
        self.nodes: dict[str, _Node] = {}
        self.docs: dict[str, DocContribution] = {}
        self.relations: dict[Triple, dict[str, int]] = {}  # (subject, predicate, object) -> {chunk id: n}
        self._relations_of: dict[str, set[Triple]] = {}  # entity -> the triples it is an end of
        self.revision = 0
        self._lookup: _Lookup | None = None

    @classmethod
    def build(cls, contributions: Iterable[DocContribution]) -> KnowledgeGraph:
        kg = cls()
        for c in contributions:
            kg.add(c)
        return kg

    def add(self, contribution: DocContribution) -> None:
        """Add a document's contribution, replacing its earlier one (an edit)."""
        old = self.docs.pop(contribution.doc_id, None)
        if old is not None:
            self._apply(old, -1)
        self._apply(contribution, +1)
        self.docs[contribution.doc_id] = contribution
        self.revision += 1

    def remove(self, doc_id: str) -> bool:
        old = self.docs.pop(doc_id, None)
        if old is None:
            return False
        self._apply(old, -1)
        self.revision += 1
        return True

    def _apply(self, contribution: DocContribution, sign: int) -> None:
        touched_nodes: set[str] = set()
        touched_edges: set[tuple[str, str]] = set()
        touched_relations: set[Triple] = set()
        for ch in contribution.chunks:
            cid = f"{contribution.doc_id}:{ch.chunk_hash}"
            for m in ch.mentions:
                node = self.nodes.get(m.key)
                if node is None:
                    node = self.nodes[m.key] = _Node()
                    self.g.add_node(m.key)
                node.mentions += sign
                _bump(node.types, m.type, sign)
                _bump(node.aliases, m.text, sign)
            keys = sorted({m.key for m in ch.mentions})
            touched_nodes.update(keys)
            for k in keys:
                node = self.nodes[k]
                _bump(node.chunks, cid, sign)
                _bump(node.docs, contribution.doc_id, sign)
                for d in ch.dates:
                    _bump(node.dates, d, sign)
            for a, b in combinations(keys, 2):
                data = self.g.get_edge_data(a, b)
                if data is None:
                    self.g.add_edge(a, b, weight=0, chunks={})
                    data = self.g[a][b]
                data["weight"] += sign
                _bump(data["chunks"], cid, sign)
                touched_edges.add((a, b))
            touched_relations.update(self._apply_relations(ch, cid, set(keys), sign))
        for a, b in touched_edges:
            if self.g[a][b]["weight"] == 0:
                self.g.remove_edge(a, b)
        for t in touched_relations:
            if not self.relations.get(t):
                self.relations.pop(t, None)
                for end in (t[0], t[2]):
                    self._relations_of.get(end, set()).discard(t)
                    if not self._relations_of.get(end, True):
                        del self._relations_of[end]
        for k in touched_nodes:
            if self.nodes[k].mentions == 0:
                del self.nodes[k]
                self.g.remove_node(k)

    def _apply_relations(self, ch: ChunkEntities, cid: str, keys: set[str], sign: int) -> set[Triple]:
        """A chunk's typed relations; only between its own entities (the same rule adding and removing)."""
        touched = set()
        for rel in ch.relations:
            if rel.subject == rel.object or not {rel.subject, rel.object} <= keys:
                continue
            t: Triple = (rel.subject, rel.predicate, rel.object)
            _bump(self.relations.setdefault(t, {}), cid, sign)
            self._relations_of.setdefault(rel.subject, set()).add(t)
            self._relations_of.setdefault(rel.object, set()).add(t)
            touched.add(t)
        return touched

    def canonical(self) -> tuple[dict[str, Any], dict[tuple[str, str], Any], dict[Triple, dict[str, int]]]:
        """Everything the graph holds, order-free: two graphs are equal iff these are."""
        nodes = {
            k: (n.mentions, n.types, n.aliases, n.chunks, n.docs, n.dates)
            for k, n in self.nodes.items()
        }
        assert set(self.g.nodes) == set(nodes), "networkx graph out of step with the counters"
        assert all(t[0] in nodes and t[2] in nodes for t in self.relations), "a relation outlived its entity"
        edges = {tuple(sorted((a, b))): (d["weight"], d["chunks"]) for a, b, d in self.g.edges(data=True)}
        return nodes, edges, dict(self.relations)  # type: ignore[return-value]

    def stats(self) -> GraphStats:
        return GraphStats(
            documents=len(self.docs), entities=self.g.number_of_nodes(), edges=self.g.number_of_edges(),
            revision=self.revision, relations=len(self.relations),
        )

    # -- views -------------------------------------------------------------

    def ref(self, key: str) -> EntityRef:
        n = self.nodes[key]
        return EntityRef(id=key, name=_top(n.aliases), type=_top(n.types))

    def entity(self, key: str, score: float | None = None) -> Entity:
        n = self.nodes[key]
        aliases = sorted(n.aliases, key=lambda a: (-n.aliases[a], a))
        return Entity(
            id=key, name=aliases[0], type=_top(n.types), aliases=aliases, mentions=n.mentions,
            documents=len(n.docs), chunks=len(n.chunks), dates=sorted(n.dates, key=lambda d: (-n.dates[d], d))[:10],
            score=score,
        )

    def neighbours(self, key: str, limit: int = 25) -> list[Neighbour]:
        adj = self.g.adj[key]
        best = sorted(adj, key=lambda o: (-adj[o]["weight"], o))[:limit]
        return [Neighbour(entity=self.ref(o), weight=adj[o]["weight"]) for o in best]

    def relations_of(self, key: str, limit: int = 25, chunks_per_relation: int = 3) -> list[Relation]:
        """Typed relations with ``key`` at either end, most supported first."""
        out = []
        for t in self._relations_of.get(key, ()):
            subject, predicate, obj = t
            support = self.relations[t]
            direction: Literal["out", "in"] = "out" if subject == key else "in"
            other = obj if subject == key else subject
            refs = [chunk_ref(c) for c in sorted(support, key=lambda c: (-support[c], c))[:chunks_per_relation]]
            out.append(Relation(predicate=predicate, direction=direction, entity=self.ref(other),
                                weight=sum(support.values()), chunks=refs))
        return sorted(out, key=lambda r: (-r.weight, r.predicate, r.direction, r.entity.id))[:limit]

    def chunks_of(self, key: str, limit: int = 20) -> list[ChunkRef]:
        n = self.nodes[key]
        return [chunk_ref(c) for c in sorted(n.chunks, key=lambda c: (-n.chunks[c], c))[:limit]]

    def path(self, source: str, target: str, chunks_per_step: int = 3) -> GraphPath | None:
        """Shortest chain of co-occurrences between two entities, with the chunks behind each step."""
        try:
            keys = nx.shortest_path(self.g, source, target)
        except (nx.NetworkXNoPath, nx.NodeNotFound):
            return None
        steps = []
        for a, b in pairwise(keys):
            d = self.g[a][b]
            refs = [chunk_ref(c) for c in sorted(d["chunks"], key=lambda c: (-d["chunks"][c], c))[:chunks_per_step]]
            steps.append(PathStep(source=a, target=b, weight=d["weight"], chunks=refs))
        return GraphPath(entities=[self.ref(k) for k in keys], steps=steps)

    def snapshot(self) -> nx.Graph:
        """A weights-only copy for slow algorithms that must not hold the writers' lock."""
        h = nx.Graph()
        h.add_nodes_from(self.g)
        h.add_weighted_edges_from((a, b, d["weight"]) for a, b, d in self.g.edges(data=True))
        return h

    def lookup(self, query: str, k: int = 10) -> list[tuple[str, float]]:
        """Entities whose names or aliases match the query, best first (rank-bm25)."""
        if self._lookup is None or self._lookup.revision != self.revision:
            self._lookup = _Lookup(self)
        return self._lookup.find(query, k)

    def search(self, query: str, hops: int = 1, k: int = 10, seeds: int = 5, fanout: int = 25) -> list[tuple[str, float]]:
        """Chunk ids ranked by closeness to the query's entities within ``hops`` co-occurrence steps."""
        found = self.lookup(query, seeds)
        if not found:
            return []
        best = found[0][1]
        weights: dict[str, float] = {}
        for rank, (key, score) in enumerate(found):
            if score < 0.5 * best:
                break
            frontier = {key}
            for depth in range(hops + 1):
                seen_next: set[str] = set()
                for node in sorted(frontier):
                    w = 0.5**depth / (rank + 1)
                    if weights.get(node, 0.0) >= w:
                        continue
                    weights[node] = w
                    adj = self.g.adj[node]
                    seen_next.update(sorted(adj, key=lambda o: (-adj[o]["weight"], o))[:fanout])
                frontier = seen_next
        scores: dict[str, float] = {}
        for node, w in weights.items():
            for cid in self.nodes[node].chunks:
                scores[cid] = scores.get(cid, 0.0) + w
        return sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))[:k]


class _Lookup:
    """rank-bm25 over each entity's key words and aliases, scored only on candidates that share a word."""

    def __init__(self, kg: KnowledgeGraph) -> None:
        from rank_bm25 import BM25Okapi

        self.revision = kg.revision
        self.keys = sorted(kg.nodes)
        corpus = []
        self.postings: dict[str, list[int]] = {}
        for i, key in enumerate(self.keys):
            toks = key.replace(":", " ").split("-") + [w for a in kg.nodes[key].aliases for w in words(a)]
            toks = [t for part in toks for t in part.split()]
            corpus.append(toks)
            for t in set(toks):
                self.postings.setdefault(t, []).append(i)
        self.bm25 = BM25Okapi(corpus) if corpus else None
        self.by_key = {k: i for i, k in enumerate(self.keys)}

    def find(self, query: str, k: int) -> list[tuple[str, float]]:
        if self.bm25 is None:
            return []
        q = words(query)
        exact = {entity_key(m.group(0)) for m in TOKEN_RE.finditer(query)} | {entity_key(query)}
        cand = sorted({i for t in q for i in self.postings.get(t, ())} | {self.by_key[e] for e in exact if e in self.by_key})
        if not cand:
            return []
        scores = self.bm25.get_batch_scores(q, cand)
        ranked = []
        for i, s in zip(cand, scores):
            overlap = len(set(q) & set(self.keys[i].replace(":", "-").split("-")))
            bonus = 10.0 if self.keys[i] in exact else 0.0
            ranked.append((self.keys[i], float(max(s, 0.0)) + overlap + bonus))
        return sorted(ranked, key=lambda kv: (-kv[1], kv[0]))[:k]


def rrf(rankings: Sequence[Sequence[str]], k: int = 60) -> list[tuple[str, float]]:
    """Reciprocal-rank fusion of ranked id lists (graph + hybrid in ``mix`` mode)."""
    scores: dict[str, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank + 1)
    return sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))



def dumps_canonical(kg: KnowledgeGraph) -> str:
    """Stable JSON of a graph's full content (for comparing two query workers or a rebuild)."""
    nodes, edges, relations = kg.canonical()
    return json.dumps({"nodes": nodes, "edges": {"|".join(k): v for k, v in edges.items()},
                       "relations": {"|".join(k): v for k, v in relations.items()}}, sort_keys=True)
