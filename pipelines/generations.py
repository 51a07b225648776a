"""Index generations: complete vector spaces side by side, one of them live.

A generation is an embedding runtime and the vector space it writes, the chunking
settings its chunks were cut with, and its own Edge shard or Qdrant collection.
Searches use the live one. Every change of a document is written to every kept
generation, so one being built is complete when its build ends and the one before
stays current for a rollback. A build reads the redacted chunk texts and payloads of
the live generation: no file is parsed or redacted again and nothing is re-chunked;
only the vectors are new.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel

from pipelines.index import SUMMARY, Index, IndexPoint, point_id
from pipelines.lexical import Bm25Encoder
from pipelines.metrics import Qrels, best_chunk_ranking, evaluate, judged_queries
from pipelines.records import Record

Status = Literal["building", "ready", "failed"]
Embed = Callable[[list[str]], np.ndarray]


class Generation(BaseModel):
    name: str
    backend: str  # the embedding runtime: torch, onnx or onnx-int8
    space: str  # the vectors it writes (pipelines.embed.vector_space)
    location: str  # an Edge shard directory, or a Qdrant collection
    chunk_tokens: int
    chunk_overlap: int
    status: Status = "ready"
    created_at: float
    built_at: float | None = None
    documents: int = 0  # build progress: documents to copy, and copied
    copied: int = 0
    embedded: int = 0  # chunks the build embedded
    chunks_total: int = 0  # build progress in chunks: the live generation's, and this one's so far
    chunks_done: int = 0
    error: str = ""
    gate: dict[str, float | bool | str] | None = None  # the last `compare` against the live generation


class Registry(BaseModel):
    """Every generation of the index and which one is live (the pointer a switch moves in one write)."""

    live: str
    previous: str | None = None
    generations: dict[str, Generation]

    @classmethod
    def load(cls, record: Record) -> Registry | None:
        raw = record.load()
        return cls.model_validate(raw) if raw else None

    def save(self, record: Record) -> None:
        record.save(self.model_dump(mode="json"))

    def next_name(self) -> str:
        return f"g{1 + max((int(n[1:]) for n in self.generations if n[1:].isdigit()), default=0)}"

    def kept(self) -> list[Generation]:
        """The generations every change is written to: all but failed ones."""
        return [g for g in self.generations.values() if g.status != "failed"]


def copy_documents(source: Index, target: Index, doc_ids: Iterable[str], embed: Embed, bm25: Bm25Encoder,
                   space: str) -> int:
    """Make ``target`` (a generation being built: no search reads it) hold the versions of ``doc_ids`` that
    ``source`` holds, with vectors of ``space``, embedding their chunks in one batch and writing them in one
    upsert (a document is one or two chunks; per-document embeds and journalled swaps cost a build most of
    its time); returns the chunks embedded (none for documents already current, or gone). A document is
    current when the target holds exactly its points (ids name document, chunk and version; the target
    holds vectors of its own space only)."""
    todo: list[tuple[str, list[dict]]] = []
    for doc_id in doc_ids:
        payloads = sorted(source.payloads({"doc_id": doc_id}), key=lambda p: p.get("position", 0))
        if not payloads:
            target.delete_document(doc_id)
        elif {point_id(doc_id, p["chunk_hash"], p["doc_version"]) for p in payloads} != target.point_ids(doc_id):
            todo.append((doc_id, payloads))
    texts = [p["text"] for _, payloads in todo for p in payloads]
    vectors: Iterator[np.ndarray] = iter(embed(texts) if texts else [])
    versions: dict[str, Sequence[IndexPoint]] = {}
    summaries: list[IndexPoint] = []
    for doc_id, payloads in todo:
        mine = [next(vectors) for _ in payloads]
        versions[doc_id] = [
            IndexPoint(doc_id, p["chunk_hash"], v, bm25.document(p["text"]), p | {"vectors": space}, p["doc_version"])
            for p, v in zip(payloads, mine)
        ]
        for summary in source.payloads({"doc_id": doc_id}, kind="summary"):
            if summary.get("summary_kind") == "extractive":  # the document's own vector, as pipelines/summary_index.py
                mean = np.mean(mine, axis=0)
                vector = mean / max(float(np.linalg.norm(mean)), 1e-12)
            else:
                vector = embed([summary["text"]])[0]
            summaries.append(IndexPoint(doc_id, SUMMARY, vector, bm25.document(summary["text"]), summary | {"vectors": space}))
    target.write_unread(versions)
    target.upsert(summaries)
    return len(texts)


def self_check(generations: Iterable[tuple[Index, Embed]], probes: list[dict], bm25: Bm25Encoder, k: int = 10
               ) -> list[float]:
    """For each generation, the share of ``probes`` (chunk payloads) whose own text, as a hybrid query,
    finds its chunk in the top ``k``: the gate when no judged queries are given."""
    rates = []
    texts = [p["text"] for p in probes]
    for index, embed in generations:
        vectors = embed(texts) if texts else np.zeros((0, 1))
        found = 0
        for probe, vector in zip(probes, vectors):
            hits = index.query(vector, bm25.query(probe["text"]), k)
            found += any(h.payload.get("chunk_hash") == probe["chunk_hash"] and h.payload.get("doc_id") == probe["doc_id"]
                         for h in hits)
        rates.append(found / len(probes) if probes else 1.0)
    return rates


def judged_check(generations: Iterable[tuple[Index, Embed]], queries: dict[str, str], qrels: Qrels,
                 bm25: Bm25Encoder, depth: int = 100) -> list[float]:
    """For each generation, nDCG@10 on judged queries (a BEIR-layout set): the gate when the user has one.
    A document is named by its key's stem, as `sluice eval retrieval` names corpus files."""
    ids = [q for q in judged_queries(qrels) if q in queries]
    texts = [queries[q] for q in ids]
    scores = []
    for index, embed in generations:
        vectors = embed(texts) if texts else np.zeros((0, 1))
        run = {q: best_chunk_ranking((Path(str(h.payload.get("key", ""))).stem, h.score)
                                     for h in index.query(vector, bm25.query(text), depth))
               for q, text, vector in zip(ids, texts, vectors)}
        scores.append(evaluate(run, {q: qrels[q] for q in ids})["ndcg@10"])
    return scores


def started(registry: Registry, backend: str, space: str, location: str, chunk_tokens: int, chunk_overlap: int
            ) -> Generation:
    """Register a new generation, building."""
    name = registry.next_name()
    generation = Generation(name=name, backend=backend, space=space, location=location.format(name=name),
                            chunk_tokens=chunk_tokens, chunk_overlap=chunk_overlap, status="building",
                            created_at=time.time())
    registry.generations[name] = generation
    return generation
