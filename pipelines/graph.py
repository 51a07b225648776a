"""Entity graph: extraction from redacted chunks, and a graph that stays exact under change.

Why contributions: every document adds a self-contained contribution (its
chunks' entity mentions). The graph keeps counters that are plain sums over
the contributions of the documents that exist, so an edit subtracts the old
contribution and adds the new one, and a delete subtracts it: whatever
sequence of changes happened, the graph equals the one built from scratch
over the surviving documents (tests/test_graph.py checks this property).
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
import sqlite3
import threading
import time
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import combinations, pairwise
from pathlib import Path
from typing import Any

import networkx as nx
import regex as re

from schemas.graph import (
    ChunkEntities,
    ChunkRef,
    ChunkRelations,
    Community,
    DocContribution,
    Entity,
    EntityRef,
    GraphPath,
    GraphStats,
    Mention,
    Neighbour,
    PathStep,
    Relation,
)

Triple = tuple[str, str, str]  # (subject key, predicate, object key)
# spaCy labels that become graph entities; DATE becomes an attribute, PERSON
# (names redaction missed) is never used: people enter only as pseudonyms.
ENTITY_LABELS = frozenset({"ORG", "GPE", "LOC", "FAC", "PRODUCT", "EVENT", "LAW", "WORK_OF_ART", "NORP"})
# What extraction reads: the above, dates, and PERSON only for the firms the small model calls people.
NER_LABELS = ENTITY_LABELS | {"DATE", "PERSON"}
# Same shape as pipelines.redact.TOKEN_RE (importing that module would load Presidio here).
TOKEN_RE = re.compile(r"<([A-Z][A-Z_]*)_([0-9a-f]{8})>")
_SUFFIXES = frozenset(
    ["inc", "incorporated", "ltd", "limited", "llc", "llp", "lp", "corp", "corporation", "co", "company", "gmbh", "plc", "ag", "sa", "bv", "nv", "oy", "ab", "pty", "srl", "spa"]
)
_WORD_RE = re.compile(r"[\p{L}\p{N}]+")


# --------------------------------------------------------------------------- normalisation


def words(text: str) -> list[str]:
    """Lower-case word tokens; acronym dots and possessives vanish ("U.S.'s" -> ["us"])."""
    t = unicodedata.normalize("NFKC", text).casefold().replace("’", "'")
    t = re.sub(r"'s\b", "", t)
    t = re.sub(r"(?<=\p{L})\.(?=\p{L})", "", t)
    return _WORD_RE.findall(t)


def entity_key(text: str) -> str:
    """One key per entity however it is written: "Acme Inc.", "ACME" and "the Acme" give "acme"."""
    m = TOKEN_RE.fullmatch(text.strip())
    if m:
        return f"{m.group(1).lower()}:{m.group(2)}"
    ws = words(text)
    while ws and ws[0] == "the":
        ws.pop(0)
    while len(ws) > 1 and ws[-1] in _SUFFIXES:
        ws.pop()
    return "-".join(ws)


def _useful(key: str) -> bool:
    return len(key) >= 2 and not key.replace("-", "").isdigit()


def mentions_from(text: str, ents: Iterable[tuple[int, int, str]]) -> tuple[list[Mention], list[str]]:
    """Mentions and dates of one chunk from NER spans (start, end, label) plus the person tokens."""
    tokens = [(m.start(), m.end()) for m in TOKEN_RE.finditer(text)]
    found = [
        Mention(key=f"person:{m.group(2)}", text=m.group(0), type="PERSON")
        for m in TOKEN_RE.finditer(text)
        if m.group(1) == "PERSON"
    ]
    dates: list[str] = []
    for start, end, label in ents:
        if any(s < end and start < e for s, e in tokens):
            continue  # spaCy reading a pseudonym as a name or an organisation
        surface = " ".join(text[start:end].split())
        if label == "PERSON" and (ws := words(surface)) and ws[-1] in _SUFFIXES:
            label = "ORG"  # the small model calls "Globex Corporation" a person; redaction left it as a firm
        if label == "DATE":
            dates.append(surface.casefold())
        elif label in ENTITY_LABELS and _useful(key := entity_key(surface)):
            found.append(Mention(key=key, text=surface, type=label))
    return found, sorted(set(dates))


def _surface_pattern(surfaces: Iterable[str]) -> re.Pattern[str] | None:
    """One pattern for every surface, longest first, whole words only, any whitespace between words."""
    alternatives = sorted({r"\s+".join(map(re.escape, surface.split())) for surface in surfaces if surface.strip()},
                          key=lambda a: (-len(a), a))
    return re.compile(r"(?<!\w)(?:" + "|".join(alternatives) + r")(?!\w)") if alternatives else None


def extract(
    doc_id: str,
    version: str,
    chunks: Sequence[tuple[int, str, str]],
    entities: Sequence[tuple[str, str]],
    tenant: str = "default",
    key: str = "",
) -> DocContribution:
    """Mentions per chunk: the document's named entities located in each redacted chunk, plus person tokens.

    ``chunks`` are (position, chunk hash, redacted text); ``entities`` are the
    (surface, spaCy label) pairs the redact stage's recogniser found and redaction
    left intact. Recognition runs once per document, in the redact stage, on the
    original wording (a second spaCy pass over the chunks cost as much as the
    redaction's own); every occurrence of a recognised name in a chunk counts.
    """
    labels: dict[str, str] = {}
    for surface, label in entities:
        labels.setdefault(" ".join(surface.split()), label)  # first reading in document order wins
    pattern = _surface_pattern(labels)
    out = []
    for position, chunk_hash, text in chunks:
        found = pattern.finditer(text) if pattern else ()
        spans = [(m.start(), m.end(), labels[" ".join(m.group(0).split())]) for m in found]
        mentions, dates = mentions_from(text, spans)
        out.append(ChunkEntities(chunk_hash=chunk_hash, position=position, mentions=mentions, dates=dates))
    return DocContribution(doc_id=doc_id, version=version, tenant=tenant, key=key, chunks=out)


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

    def add(self, c: DocContribution) -> None:
        """Add a document's contribution, replacing its earlier one (an edit)."""
        old = self.docs.pop(c.doc_id, None)
        if old is not None:
            self._apply(old, -1)
        self._apply(c, +1)
        self.docs[c.doc_id] = c
        self.revision += 1

    def remove(self, doc_id: str) -> bool:
        old = self.docs.pop(doc_id, None)
        if old is None:
            return False
        self._apply(old, -1)
        self.revision += 1
        return True

    def _apply(self, c: DocContribution, sign: int) -> None:
        touched_nodes: set[str] = set()
        touched_edges: set[tuple[str, str]] = set()
        touched_relations: set[Triple] = set()
        for ch in c.chunks:
            cid = f"{c.doc_id}:{ch.chunk_hash}"
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
                _bump(node.docs, c.doc_id, sign)
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
            t = (rel.subject, rel.predicate, rel.object)
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
            other, direction = (obj, "out") if subject == key else (subject, "in")
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


def louvain(g: nx.Graph, seed: int = 7) -> list[set[str]]:
    """Louvain communities of a snapshot, largest first (seeded: the same graph gives the same answer)."""
    found = nx.community.louvain_communities(g, weight="weight", seed=seed) if g.number_of_nodes() else []
    return sorted(found, key=lambda c: (-len(c), min(c)))


def community_views(found: list[set[str]], kg: KnowledgeGraph, top: int = 10) -> list[Community]:
    out = []
    for i, members in enumerate(found):
        alive = sorted((m for m in members if m in kg.nodes), key=lambda m: (-kg.nodes[m].mentions, m))
        out.append(Community(id=i, size=len(alive), entities=[kg.ref(m) for m in alive[:top]]))
    return out


def rrf(rankings: Sequence[Sequence[str]], k: int = 60) -> list[tuple[str, float]]:
    """Reciprocal-rank fusion of ranked id lists (graph + hybrid in ``mix`` mode)."""
    scores: dict[str, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank + 1)
    return sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))


# --------------------------------------------------------------------------- durable contributions


class ContributionStore:
    """One SQLite row per document: the graph's durable source (rebuilt from it at start)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS contributions (doc_id TEXT PRIMARY KEY, version TEXT NOT NULL, body TEXT NOT NULL)"
        )

    def put(self, c: DocContribution) -> None:
        self._db.execute("INSERT OR REPLACE INTO contributions VALUES (?, ?, ?)", (c.doc_id, c.version, c.model_dump_json()))

    def delete(self, doc_id: str) -> None:
        self._db.execute("DELETE FROM contributions WHERE doc_id = ?", (doc_id,))

    def versions(self) -> dict[str, str]:
        return dict(self._db.execute("SELECT doc_id, version FROM contributions").fetchall())

    def load(self) -> Iterator[DocContribution]:
        for (body,) in self._db.execute("SELECT body FROM contributions ORDER BY doc_id"):
            yield DocContribution.model_validate_json(body)

    def close(self) -> None:
        self._db.close()


class GraphSet:
    """The graphs one query worker serves: one per tenant when tenants are separated, else one.

    All reads and writes go through ``lock`` (the query worker answers from a
    thread pool); the store is written before memory, so a crash never leaves
    memory ahead of disk.
    """

    def __init__(self, store: ContributionStore, per_tenant: bool = False) -> None:
        self.store = store
        self.per_tenant = per_tenant
        self.lock = threading.RLock()
        self.graphs: dict[str, KnowledgeGraph] = {}
        self._part: dict[str, str] = {}
        self.load_seconds = 0.0
        self._communities: dict[str, tuple[int, list[Community]]] = {}

    @classmethod
    def open(cls, path: Path, per_tenant: bool = False) -> GraphSet:
        started = time.perf_counter()
        gs = cls(ContributionStore(path), per_tenant)
        for c in gs.store.load():
            gs._add(c)
        gs.load_seconds = time.perf_counter() - started
        return gs

    def partition(self, tenant: str | None) -> str:
        return (tenant or "default") if self.per_tenant else "*"

    def graph(self, tenant: str | None = None) -> KnowledgeGraph:
        return self.graphs.get(self.partition(tenant)) or KnowledgeGraph()

    def _add(self, c: DocContribution) -> None:
        part = self.partition(c.tenant)
        if self._part.get(c.doc_id, part) != part:
            self.graphs[self._part[c.doc_id]].remove(c.doc_id)
        self.graphs.setdefault(part, KnowledgeGraph()).add(c)
        self._part[c.doc_id] = part

    def apply(self, c: DocContribution) -> None:
        with self.lock:
            self.store.put(c)
            self._add(c)

    def forget(self, doc_id: str) -> bool:
        with self.lock:
            self.store.delete(doc_id)
            part = self._part.pop(doc_id, None)
            return bool(part) and self.graphs[part].remove(doc_id)

    def attach(self, found: ChunkRelations) -> str:
        """Put a chunk's validated relations into its document's contribution (replacing earlier ones).

        "applied" or "unchanged"; "waiting" when the graph does not hold that version
        (yet: the caller knows whether it is coming or gone); "stale" when that version
        has no such chunk.
        """
        with self.lock:
            part = self._part.get(found.doc_id)
            current = self.graphs[part].docs.get(found.doc_id) if part else None
            if current is None or current.version != found.version:
                return "waiting"
            if not any(ch.chunk_hash == found.chunk_hash for ch in current.chunks):
                return "stale"
            chunks = [ch.model_copy(update={"relations": found.relations}) if ch.chunk_hash == found.chunk_hash else ch
                      for ch in current.chunks]
            if chunks == current.chunks:
                return "unchanged"
            self.apply(current.model_copy(update={"chunks": chunks}))
            return "applied"

    def communities(self, tenant: str | None = None) -> list[Community]:
        """Louvain on a snapshot (writers are not blocked while it runs), cached per graph revision."""
        part = self.partition(tenant)
        with self.lock:
            kg = self.graph(tenant)
            cached = self._communities.get(part)
            if cached and cached[0] == kg.revision:
                return cached[1]
            snap, revision = kg.snapshot(), kg.revision
        found = louvain(snap)
        with self.lock:
            views = community_views(found, kg)
            self._communities[part] = (revision, views)
        return views


def dumps_canonical(kg: KnowledgeGraph) -> str:
    """Stable JSON of a graph's full content (for comparing two query workers or a rebuild)."""
    nodes, edges, relations = kg.canonical()
    return json.dumps({"nodes": nodes, "edges": {"|".join(k): v for k, v in edges.items()},
                       "relations": {"|".join(k): v for k, v in relations.items()}}, sort_keys=True)
