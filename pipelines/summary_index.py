"""Summaries as search points: one per document, beside its chunks in the same index.

Why the same index: a summary answers "which document is about X" better than
any one chunk, and it must obey the same filters (tenant, prefix, dates, file
type) as the chunks. The summary point copies its document fields from the
document's own chunk payloads, so a filter that keeps a document's chunks keeps
its summary, and carries ``kind: "summary"`` so chunk-level operations (diff,
listings, counts) never see it (pipelines/index.py). Its id is derived from the
document id alone: a new summary replaces the old point, and deleting the
document's points removes it.

Its dense vector depends on the summary's kind. An extractive summary is a few
of the document's own sentences, so its point takes the document's vector,
the normalised mean of its chunk vectors, which are already in the index: no
second model pass per document (that pass was over a third of the embedding
work of an ingest). On CISI, summary search loses 0.006 nDCG@10 and gains
0.016 recall@100 by it (README, ``sluice eval retrieval``). A batch summary is
new wording, so its own text is embedded. Both get the summary text's BM25
vector.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np

from pipelines.embed import Embedder
from pipelines.index import SCHEMA_VERSION, SUMMARY, Index, IndexPoint
from pipelines.lexical import Bm25Encoder
from schemas.summaries import Summary

# Document-level payload fields every chunk carries; the summary point copies them from one chunk.
DOCUMENT_FIELDS = ("doc_id", "source", "key", "prefixes", "tenant", "file_type", "doc_version", "title", "created_at")


def summary_payload(summary: Summary, chunk: dict[str, Any], now: str) -> dict[str, Any]:
    doc = {k: chunk.get(k) for k in DOCUMENT_FIELDS}
    return doc | {
        "kind": SUMMARY,
        "position": -1,  # before every chunk; tells a summary hit apart from chunk 0
        "text": summary.text,
        "summary_kind": summary.kind,
        "summary_method": summary.method,
        "summary_model": summary.model,
        "updated_at": now,
        "schema_version": SCHEMA_VERSION,
    }


def document_vector(chunk_vectors: list[np.ndarray]) -> np.ndarray:
    """The normalised mean of a document's (normalised) chunk vectors."""
    mean = np.mean(chunk_vectors, axis=0, dtype=np.float32)
    return np.asarray(mean / max(float(np.linalg.norm(mean)), 1e-12), dtype=np.float32)


def index_summary(index: Index, embedder: Embedder, bm25: Bm25Encoder, summary: Summary | None, doc_id: str) -> str:
    """Make the index's summary point of ``doc_id`` match ``summary``; the outcome, for the task's result.

    Nothing is written for a summary of content the index no longer holds, and a
    point left from an older version is removed rather than kept stale.
    """
    stored = index.chunk_vectors(doc_id)
    chunks = [payload for payload, _ in stored]
    current = {p.get("doc_version") for p in chunks}
    if summary is None or not chunks or current != {summary.version}:
        had = index.count({"doc_id": doc_id}, kind="summary")
        if had:
            index.delete_chunks(doc_id, [SUMMARY])
        return "removed" if had else "skipped"
    first = min(chunks, key=lambda p: p.get("position", 0))
    existing = list(index.payloads({"doc_id": doc_id}, kind="summary"))
    if existing and existing[0].get("text") == summary.text and existing[0].get("doc_version") == summary.version:
        return "unchanged"
    payload = summary_payload(summary, first, datetime.now(UTC).isoformat())
    if summary.kind == "extractive":
        vector = document_vector([dense for _, dense in stored])
    else:
        vector = embedder.embed([summary.text])[0]
    index.upsert([IndexPoint(doc_id, SUMMARY, vector, bm25.document(summary.text), payload)])  # id: summary_point_id
    return "indexed"
