"""Content-hash diff: which chunks need embedding, which can be reused, which vanished.

Runs before embed, against the chunk hashes stored in the index payloads, so
an unchanged chunk never costs an embedding, whatever Redis remembers.
"""

from __future__ import annotations

from collections.abc import Iterable

from schemas.documents import Chunk, ChunkPlan


def plan(chunks: list[Chunk], indexed_hashes: Iterable[str], force: bool = False) -> ChunkPlan:
    indexed = set(indexed_hashes)
    current = {c.hash for c in chunks}
    seen: set[str] = set()
    embed: list[int] = []
    reuse: list[int] = []
    for c in chunks:
        if c.hash in seen:  # the same text twice in one document is one point
            continue
        seen.add(c.hash)
        (reuse if c.hash in indexed and not force else embed).append(c.position)
    return ChunkPlan(embed=embed, reuse=reuse, delete=sorted(indexed - current))
