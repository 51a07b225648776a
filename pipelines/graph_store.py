"""The graphs a query worker serves, and their durable source: one SQLite row of contributions per document.

The store is written before memory, so a crash never leaves memory ahead of disk; at
start the graphs are rebuilt from it.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path


from schemas.graph import (
    ChunkRelations,
    Community,
    DocContribution,
)

from pipelines.graph import KnowledgeGraph
from pipelines.graph_communities import community_views, louvain


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

    def put(self, contribution: DocContribution) -> None:
        self._db.execute("INSERT OR REPLACE INTO contributions VALUES (?, ?, ?)", (contribution.doc_id, contribution.version, contribution.model_dump_json()))

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
        graph_set = cls(ContributionStore(path), per_tenant)
        for c in graph_set.store.load():
            graph_set._add(c)
        graph_set.load_seconds = time.perf_counter() - started
        return graph_set

    def partition(self, tenant: str | None) -> str:
        return (tenant or "default") if self.per_tenant else "*"

    def graph(self, tenant: str | None = None) -> KnowledgeGraph:
        return self.graphs.get(self.partition(tenant)) or KnowledgeGraph()

    def _add(self, contribution: DocContribution) -> None:
        part = self.partition(contribution.tenant)
        if self._part.get(contribution.doc_id, part) != part:
            self.graphs[self._part[contribution.doc_id]].remove(contribution.doc_id)
        self.graphs.setdefault(part, KnowledgeGraph()).add(contribution)
        self._part[contribution.doc_id] = part

    def apply(self, contribution: DocContribution) -> None:
        with self.lock:
            self.store.put(contribution)
            self._add(contribution)

    def forget(self, doc_id: str) -> bool:
        with self.lock:
            self.store.delete(doc_id)
            part = self._part.pop(doc_id, None)
            return part is not None and self.graphs[part].remove(doc_id)

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

