"""Apply a chunk plan to the index: add new chunks, refresh reused ones, drop vanished ones."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np

from pipelines.diff import plan, unchanged
from pipelines.embed import SPACE
from pipelines.index import SCHEMA_VERSION, Index, IndexPoint
from pipelines.lexical import Bm25Encoder
from schemas.documents import Chunk, ChunkPlan, RedactedDocument
from schemas.events import Event
from schemas.search import PREFIX_CHARS


@dataclass(frozen=True)
class DocumentMeta:
    """Document-level payload fields copied onto every chunk point."""

    source: str
    key: str
    tenant: str
    file_type: str
    version: str
    pii_counts: dict[str, int]
    vectors: str = SPACE  # the embedder's vector space (pipelines.embed.vector_space)

    @classmethod
    def of(cls, event: Event, redacted: RedactedDocument, space: str) -> DocumentMeta:
        return cls(source=event.source, key=event.key, tenant=event.tenant, file_type=redacted.file_type,
                   version=event.version, pii_counts=redacted.pii_counts, vectors=space)

    def record(self) -> dict[str, Any]:
        """The same fields for the document's status record (State.record_indexed)."""
        return {"key": self.key, "source": self.source, "tenant": self.tenant, "file_type": self.file_type,
                "pii_counts": self.pii_counts}


def plan_counts(chunks: list[Chunk], plan: ChunkPlan) -> dict[str, int]:
    """What indexing a version did, as reported to the user and counted for /metrics."""
    return {"chunks": len(chunks), "chunks_embedded": len(plan.embed), "chunks_reused": len(plan.reuse),
            "chunks_deleted": len(plan.delete)}


def key_prefixes(key: str) -> list[str]:
    """Every prefix a search's ``prefix`` may name, matched as a keyword inside Qdrant: each first 1..N
    characters of the key up to PREFIX_CHARS ("a/bc" -> "a", "a/", "a/b", "a/bc"), then each folder
    prefix beyond. A superset of the folder prefixes stored before: those points still match folders."""
    chars = [key[:n] for n in range(1, min(len(key), PREFIX_CHARS) + 1)]
    return chars + [key[: i + 1] for i, c in enumerate(key) if c == "/" and i >= PREFIX_CHARS]


def _payload(chunk: Chunk, meta: DocumentMeta, now: str) -> dict[str, Any]:
    return {
        "doc_id": chunk.doc_id,
        "chunk_hash": chunk.hash,
        "position": chunk.position,
        "text": chunk.text,
        "title": chunk.title,
        "section": chunk.section,
        "page": chunk.page,
        "source": meta.source,
        "key": meta.key,
        "prefixes": key_prefixes(meta.key),
        "tenant": meta.tenant,
        "file_type": meta.file_type,
        "doc_version": meta.version,
        "pii_counts": meta.pii_counts,
        "updated_at": now,
        "schema_version": SCHEMA_VERSION,
        "vectors": meta.vectors,
    }


def apply_plan(
    index: Index,
    chunks: list[Chunk],
    plan: ChunkPlan,
    vectors: np.ndarray,
    bm25: Bm25Encoder,
    meta: DocumentMeta,
) -> None:
    """Write this version of the document: ``vectors[i]`` belongs to ``plan.embed[i]``; reused chunks
    take their vector from the index. Readers see the old version or this one whole (Index.write_version).
    Safe to repeat: point ids derive from document, chunk and version."""
    if len(vectors) != len(plan.embed):
        raise ValueError(f"{len(vectors)} vectors for {len(plan.embed)} chunks")
    if not chunks:
        return
    now = datetime.now(timezone.utc).isoformat()
    by_pos = {c.position: c for c in chunks}
    stored = {p["chunk_hash"]: (p, dense) for p, dense in index.chunk_vectors(chunks[0].doc_id)} if plan.reuse else {}
    points = []
    for pos, vector in zip(plan.embed, vectors):
        c = by_pos[pos]
        payload = _payload(c, meta, now) | {"created_at": now}
        points.append(IndexPoint(c.doc_id, c.hash, vector, bm25.document(c.text), payload, meta.version))
    for pos in plan.reuse:
        c = by_pos[pos]
        before, vector = stored[c.hash]
        payload = _payload(c, meta, now) | {"created_at": before.get("created_at", now)}
        points.append(IndexPoint(c.doc_id, c.hash, vector, bm25.document(c.text), payload, meta.version))
    index.write_version(chunks[0].doc_id, points)


def index_version(index: Index, chunks: list[Chunk], meta: DocumentMeta, embed: Callable[[list[str]], np.ndarray],
                  bm25: Bm25Encoder, force: bool = False) -> int:
    """Plan, embed and write one version of a document into ``index`` (a generation other than the live
    one, whose plan the stages already made); returns the chunks embedded."""
    indexed = index.chunk_hashes(chunks[0].doc_id) if chunks else {}
    chunk_plan = plan(chunks, indexed, force=force, space=meta.vectors)
    if unchanged(chunk_plan, indexed, meta.version):
        return 0
    by_pos = {c.position: c for c in chunks}
    apply_plan(index, chunks, chunk_plan, embed([by_pos[p].text for p in chunk_plan.embed]), bm25, meta)
    return len(chunk_plan.embed)
