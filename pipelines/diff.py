"""Content-hash diff: which chunks need embedding, which can be reused, which vanished.

Runs before embed, against the chunk hashes stored in the index payloads, so
an unchanged chunk never costs an embedding, whatever Redis remembers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipelines.embed import SPACE
from schemas.documents import Chunk, ChunkPlan


def unchanged(plan: ChunkPlan, indexed: Mapping[str, Mapping[str, Any]], version: str) -> bool:
    """Nothing to write: no chunk to embed or drop, and every indexed chunk already carries this
    version (a new version with the same chunks still rewrites their payloads)."""
    return not plan.embed and not plan.delete and all(p.get("doc_version") == version for p in indexed.values())


def plan(
    chunks: list[Chunk], indexed: Mapping[str, Mapping[str, Any]], force: bool = False, space: str = SPACE
) -> ChunkPlan:
    """``indexed``: the document's chunk hashes in the index and their payloads.

    A chunk is reused only if its vector is in ``space``, the embedder's: after a
    switch of embedding backend, re-indexing embeds every chunk again.
    """
    # a point without "vectors" was written before spaces were recorded, by the fp32 model
    reusable = {h for h, payload in indexed.items() if payload.get("vectors") == space}
    current = {c.hash for c in chunks}
    seen: set[str] = set()
    embed: list[int] = []
    reuse: list[int] = []
    for c in chunks:
        if c.hash in seen:  # the same text twice in one document is one point
            continue
        seen.add(c.hash)
        (reuse if c.hash in reusable and not force else embed).append(c.position)
    return ChunkPlan(embed=embed, reuse=reuse, delete=sorted(set(indexed) - current), space=space)
