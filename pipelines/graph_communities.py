"""Communities of the entity graph: Louvain on a snapshot, seeded so the same graph gives the same answer."""

from __future__ import annotations


import networkx as nx

from schemas.graph import (
    Community,
)

from pipelines.graph import KnowledgeGraph


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
