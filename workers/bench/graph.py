"""How fast the query worker's graph loads: a synthetic store with N edges, written then re-opened."""

from __future__ import annotations

import random
import tempfile
import time
from pathlib import Path
from typing import Any

from pipelines.graph_store import ContributionStore, GraphSet
from schemas.graph import ChunkEntities, DocContribution, Mention


def synthetic(edges: int, seed: int = 1) -> list[DocContribution]:
    """Documents of 10 chunks, 6 entities a chunk, names drawn 30% from a heavy-tailed head (hubs)."""
    rng = random.Random(seed)
    vocab = [f"entity {i}" for i in range(max(10, edges // 4))]
    pairs: set[tuple[str, str]] = set()
    docs: list[DocContribution] = []
    while len(pairs) < edges:
        chunks = []
        for pos in range(10):
            names = sorted({vocab[min(int(rng.paretovariate(0.6)) - 1, len(vocab) - 1)] if rng.random() < 0.3
                            else rng.choice(vocab) for _ in range(6)})
            pairs.update((a, b) for i, a in enumerate(names) for b in names[i + 1:])
            chunks.append(ChunkEntities(
                chunk_hash=f"{len(docs):08x}{pos:04x}".ljust(64, "0"), position=pos,
                mentions=[Mention(key=n.replace(" ", "-"), text=n.title(), type="ORG") for n in names],
                dates=["march 2024"] if pos % 3 == 0 else [],
            ))
        docs.append(DocContribution(doc_id=f"{len(docs):032x}", version="f" * 64, chunks=chunks))
    return docs


def bench(edges: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="sluice-graph-") as tmp:
        path = Path(tmp) / "contributions.sqlite3"
        docs = synthetic(edges)
        store = ContributionStore(path)
        started = time.perf_counter()
        store._db.execute("BEGIN")
        for c in docs:
            store.put(c)
        store._db.execute("COMMIT")
        write_s = time.perf_counter() - started
        store.close()
        gs = GraphSet.open(path)
        stats = gs.graph().stats()
        started = time.perf_counter()
        gs.graph().lookup("entity 42")
        lookup_build_s = time.perf_counter() - started
        started = time.perf_counter()
        gs.graph().search("entity 43", hops=1)
        search_s = time.perf_counter() - started
        started = time.perf_counter()
        found = gs.communities()
        louvain_s = time.perf_counter() - started
        return {
            "documents": stats.documents, "entities": stats.entities, "edges": stats.edges,
            "store_mb": round(path.stat().st_size / 1e6, 1), "write_s": round(write_s, 2),
            "load_s": round(gs.load_seconds, 2), "first_lookup_s": round(lookup_build_s, 3),
            "graph_search_s": round(search_s, 3), "louvain_s": round(louvain_s, 2), "communities": len(found),
        }
