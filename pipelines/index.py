"""The vector index: one small interface, two implementations.

Qdrant Edge is the embedded default (one process owns the directory);
qdrant-client talks to a Qdrant server (tested against its in-memory mode).
Each point is one chunk: a named dense vector, a BM25 sparse vector and a
payload. Point ids are uuid5(doc id, chunk hash), so replays are harmless.
Qdrant is the source of truth for what is indexed: the chunk hashes and the
document version live in the payloads.

Besides chunks, the index holds one point per document summary (payload
``kind: "summary"``, id uuid5(doc id, "summary")), so summaries are searched
with the same vectors and filters. Every chunk-level operation (diff's chunk
hashes, listings, counts, manifests) sees chunks only: a ``Where`` selects
chunks unless it names another kind, and chunk points carry no ``kind``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

DENSE = "dense"
SPARSE = "bm25"
SCHEMA_VERSION = 1
KEYWORD_FIELDS = ("doc_id", "chunk_hash", "tenant", "source", "key", "file_type", "doc_version", "prefixes", "kind")
DATETIME_FIELDS = ("created_at", "updated_at")
_NAMESPACE = uuid.UUID("5b0f5a3e-8c1e-4b8e-9a53-6c1f1d1c0a11")
SUMMARY = "summary"  # payload ``kind`` of summary points; chunk points have no ``kind``
Kind = Literal["chunk", "summary"] | None  # None: every point (deletes of a whole document)


def point_id(doc_id: str, chunk_hash: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"{doc_id}:{chunk_hash}"))


def summary_point_id(doc_id: str) -> str:
    """One summary point per document: a new summary replaces the old one in place."""
    return point_id(doc_id, SUMMARY)


@dataclass(frozen=True)
class Sparse:
    indices: list[int]
    values: list[float]


@dataclass(frozen=True)
class IndexPoint:
    doc_id: str
    chunk_hash: str
    dense: np.ndarray
    sparse: Sparse
    payload: dict[str, Any]

    @property
    def id(self) -> str:
        return point_id(self.doc_id, self.chunk_hash)


@dataclass(frozen=True)
class Where:
    """A backend-neutral filter, applied inside the vector search (never after it).

    ``equals`` matches keyword fields (an array field matches on any element);
    ``ranges`` bounds datetime fields with ISO 8601 strings (gte, lte);
    ``kind`` picks chunk points (the default), summary points, or both (None).
    """

    equals: dict[str, str] = field(default_factory=dict)
    ranges: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)
    kind: Kind = "chunk"

    @classmethod
    def of(cls, must: Where | dict[str, str] | None, kind: Kind = "chunk") -> Where:
        if isinstance(must, Where):
            return must
        return cls(equals=dict(must or {}), kind=kind)

    def __bool__(self) -> bool:
        return bool(self.equals or self.ranges or self.kind)


@dataclass(frozen=True)
class Fusion:
    """How hybrid search fuses its retrievers (RRF inside Qdrant).

    ``k=20`` rather than the customary 60: tuned on CISI, where k from 20 to 30
    with equal weights all reached nDCG@10 0.45-0.46 and 60 gave 0.449.
    """

    k: int = 20
    dense_weight: float = 1.0
    sparse_weight: float = 1.0
    depth: int = 100  # candidates each retriever contributes


FUSION = Fusion()


def _retrievers(fused: list[Any], dense: list[Any], sparse: list[Any]) -> list["Found"]:
    """Tag each fused hit with the retrievers whose candidate lists held it."""
    dense_ids = {str(p.id) for p in dense}
    sparse_ids = {str(p.id) for p in sparse}
    return [
        Found(
            str(p.id),
            float(p.score),
            dict(p.payload or {}),
            tuple(n for n, ids in (("dense", dense_ids), ("lexical", sparse_ids)) if str(p.id) in ids),
        )
        for p in fused
    ]


@dataclass(frozen=True)
class Found:
    id: str
    score: float
    payload: dict[str, Any]
    retrievers: tuple[str, ...] = field(default=())


class Index(Protocol):
    def upsert(self, points: Sequence[IndexPoint]) -> None: ...
    def set_payload(self, doc_id: str, chunk_hash: str, payload: dict[str, Any]) -> None: ...
    def delete_chunks(self, doc_id: str, hashes: Iterable[str]) -> None: ...
    def delete_document(self, doc_id: str) -> None: ...
    def chunk_hashes(self, doc_id: str) -> dict[str, dict[str, Any]]: ...
    def documents(self, source: str | None = None) -> dict[str, dict[str, Any]]: ...
    def payloads(self, must: dict[str, str] | None = None, kind: Kind = "chunk") -> Iterable[dict[str, Any]]: ...
    def chunk_vectors(self, doc_id: str) -> list[tuple[dict[str, Any], np.ndarray]]:
        """A document's chunk payloads, each with its dense vector."""
        ...
    def count(self, must: dict[str, str] | None = None, kind: Kind = "chunk") -> int: ...
    def query(
        self,
        dense: np.ndarray | None,
        sparse: Sparse | None,
        limit: int,
        must: "Where | dict[str, str] | None" = None,
    ) -> list[Found]: ...
    def close(self) -> None: ...


def _scroll(scroll_page, page_size: int = 512) -> Iterable[Any]:  # type: ignore[no-untyped-def]
    """Walk every page of a scroll, yielding records."""
    offset = None
    while True:
        records, offset = scroll_page(offset, page_size)
        yield from records
        if offset is None:
            break


def _scroll_payloads(scroll_page) -> Iterable[dict[str, Any]]:  # type: ignore[no-untyped-def]
    return (dict(record.payload or {}) for record in _scroll(scroll_page))


def _with_dense(records: Iterable[Any]) -> list[tuple[dict[str, Any], np.ndarray]]:
    return [(dict(r.payload or {}), np.asarray(r.vector[DENSE], dtype=np.float32)) for r in records]


def _documents_from(payloads: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    docs: dict[str, dict[str, Any]] = {}
    for p in payloads:
        d = docs.setdefault(
            p["doc_id"],
            {k: p.get(k) for k in ("key", "source", "tenant")} | {"version": p.get("doc_version"), "chunks": 0},
        )
        d["chunks"] += 1
    return docs


class EdgeIndex:
    """Embedded Qdrant Edge shard in a local directory (single owning process)."""

    def __init__(self, path: Path) -> None:
        import qdrant_edge as q

        self.q = q
        path.mkdir(parents=True, exist_ok=True)
        config = q.EdgeConfig(
            vectors={DENSE: q.EdgeVectorParams(size=384, distance=q.Distance.Cosine)},
            sparse_vectors={SPARSE: q.EdgeSparseVectorParams(modifier=q.Modifier.Idf)},
        )
        if any(path.iterdir()):
            self.shard = q.EdgeShard.load(str(path))
        else:
            self.shard = q.EdgeShard.create(str(path), config)
            for name in KEYWORD_FIELDS:
                self.shard.update(q.UpdateOperation.create_field_index(name, q.PayloadSchemaType.Keyword))
            for name in DATETIME_FIELDS:
                self.shard.update(q.UpdateOperation.create_field_index(name, q.PayloadSchemaType.Datetime))

    def _filter(self, must: Where | dict[str, str] | None, kind: Kind = "chunk"):  # type: ignore[no-untyped-def]
        where = Where.of(must, kind)
        if not where:
            return None
        q = self.q
        conditions = [q.FieldCondition(key=k, match=q.MatchValue(v)) for k, v in where.equals.items()]
        conditions += [
            q.FieldCondition(key=k, range=q.RangeDateTime(gte=lo, lte=hi)) for k, (lo, hi) in where.ranges.items()
        ]
        summary = q.FieldCondition(key="kind", match=q.MatchValue(SUMMARY))
        if where.kind == "summary":
            conditions.append(summary)
        return q.Filter(must=conditions or None, must_not=[summary] if where.kind == "chunk" else None)

    def upsert(self, points: Sequence[IndexPoint]) -> None:
        q = self.q
        if not points:
            return
        self.shard.update(
            q.UpdateOperation.upsert_points(
                [
                    q.Point(
                        p.id,
                        {DENSE: p.dense.tolist(), SPARSE: q.SparseVector(p.sparse.indices, p.sparse.values)},
                        p.payload,
                    )
                    for p in points
                ]
            )
        )

    def set_payload(self, doc_id: str, chunk_hash: str, payload: dict[str, Any]) -> None:
        self.shard.update(self.q.UpdateOperation.set_payload([point_id(doc_id, chunk_hash)], payload))

    def delete_chunks(self, doc_id: str, hashes: Iterable[str]) -> None:
        ids: list[int | str | uuid.UUID] = [point_id(doc_id, h) for h in hashes]
        if ids:
            self.shard.update(self.q.UpdateOperation.delete_points(ids))

    def delete_document(self, doc_id: str) -> None:
        self.shard.update(self.q.UpdateOperation.delete_points_by_filter(self._filter({"doc_id": doc_id}, None)))

    def payloads(self, must: dict[str, str] | None = None, kind: Kind = "chunk") -> Iterable[dict[str, Any]]:
        q = self.q
        flt = self._filter(must, kind)

        def page(offset, limit):  # type: ignore[no-untyped-def]
            return self.shard.scroll(q.ScrollRequest(offset=offset, limit=limit, filter=flt, with_payload=True))

        return _scroll_payloads(page)

    def chunk_vectors(self, doc_id: str) -> list[tuple[dict[str, Any], np.ndarray]]:
        q, flt = self.q, self._filter({"doc_id": doc_id})

        def page(offset, limit):  # type: ignore[no-untyped-def]
            return self.shard.scroll(
                q.ScrollRequest(offset=offset, limit=limit, filter=flt, with_payload=True, with_vector=[DENSE])
            )

        return _with_dense(_scroll(page))

    def chunk_hashes(self, doc_id: str) -> dict[str, dict[str, Any]]:
        return {p["chunk_hash"]: p for p in self.payloads({"doc_id": doc_id})}

    def documents(self, source: str | None = None) -> dict[str, dict[str, Any]]:
        return _documents_from(self.payloads({"source": source} if source else None))

    def count(self, must: dict[str, str] | None = None, kind: Kind = "chunk") -> int:
        return self.shard.count(self.q.CountRequest(filter=self._filter(must, kind), exact=True))

    def query(self, dense, sparse, limit, must=None):  # type: ignore[no-untyped-def]
        q = self.q
        flt = self._filter(must)
        dense_q = q.Query.Nearest(dense.tolist(), using=DENSE) if dense is not None else None
        sparse_q = (
            q.Query.Nearest(q.SparseVector(sparse.indices, sparse.values), using=SPARSE)
            if sparse is not None and sparse.indices
            else None
        )
        if dense_q is None and sparse_q is None:
            return []
        if dense_q is None or sparse_q is None:
            single = q.QueryRequest(query=dense_q or sparse_q, limit=limit, filter=flt, with_payload=True)
            name = "dense" if dense_q is not None else "lexical"
            return [Found(str(p.id), float(p.score), dict(p.payload or {}), (name,)) for p in self.shard.query(single)]
        depth = max(FUSION.depth, limit)
        fused = q.QueryRequest(
            prefetches=[q.Prefetch(limit=depth, query=dense_q, filter=flt), q.Prefetch(limit=depth, query=sparse_q, filter=flt)],
            query=q.Fusion.Rrf(k=FUSION.k, weights=[FUSION.dense_weight, FUSION.sparse_weight]),
            limit=limit,
            with_payload=True,
        )
        each = [q.QueryRequest(query=x, limit=depth, filter=flt, with_payload=False) for x in (dense_q, sparse_q)]
        fused_hits, dense_hits, sparse_hits = self.shard.query_batch(q.QueryBatchRequest([fused, *each]))
        return _retrievers(fused_hits, dense_hits, sparse_hits)

    def close(self) -> None:
        self.shard.flush()
        self.shard.close()


class ServerIndex:
    """A collection on a Qdrant server through qdrant-client (``location=':memory:'`` in tests)."""

    def __init__(self, url: str, collection: str, api_key: str | None = None) -> None:
        from qdrant_client import QdrantClient, models

        self.m = models
        self.collection = collection
        if url == ":memory:":
            self.client = QdrantClient(location=":memory:")
        else:
            self.client = QdrantClient(url=url, api_key=api_key)
        if not self.client.collection_exists(collection):
            self.client.create_collection(
                collection,
                vectors_config={DENSE: models.VectorParams(size=384, distance=models.Distance.COSINE)},
                sparse_vectors_config={SPARSE: models.SparseVectorParams(modifier=models.Modifier.IDF)},
            )
            if url != ":memory:":  # local mode has no payload indexes (and warns about them)
                for name in KEYWORD_FIELDS:
                    self.client.create_payload_index(collection, name, models.PayloadSchemaType.KEYWORD)
                for name in DATETIME_FIELDS:
                    self.client.create_payload_index(collection, name, models.PayloadSchemaType.DATETIME)

    def _filter(self, must: Where | dict[str, str] | None, kind: Kind = "chunk"):  # type: ignore[no-untyped-def]
        where = Where.of(must, kind)
        if not where:
            return None
        m = self.m
        conditions = [m.FieldCondition(key=k, match=m.MatchValue(value=v)) for k, v in where.equals.items()]
        conditions += [
            m.FieldCondition(key=k, range=m.DatetimeRange(gte=lo, lte=hi)) for k, (lo, hi) in where.ranges.items()
        ]
        summary = m.FieldCondition(key="kind", match=m.MatchValue(value=SUMMARY))
        if where.kind == "summary":
            conditions.append(summary)
        return m.Filter(must=conditions or None, must_not=[summary] if where.kind == "chunk" else None)

    def upsert(self, points: Sequence[IndexPoint]) -> None:
        m = self.m
        if not points:
            return
        self.client.upsert(
            self.collection,
            [
                m.PointStruct(
                    id=p.id,
                    vector={
                        DENSE: p.dense.tolist(),
                        SPARSE: m.SparseVector(indices=p.sparse.indices, values=p.sparse.values),
                    },
                    payload=p.payload,
                )
                for p in points
            ],
        )

    def set_payload(self, doc_id: str, chunk_hash: str, payload: dict[str, Any]) -> None:
        self.client.set_payload(self.collection, payload, points=[point_id(doc_id, chunk_hash)])

    def delete_chunks(self, doc_id: str, hashes: Iterable[str]) -> None:
        ids: list[int | str | uuid.UUID] = [point_id(doc_id, h) for h in hashes]
        if ids:
            self.client.delete(self.collection, points_selector=self.m.PointIdsList(points=ids))

    def delete_document(self, doc_id: str) -> None:
        self.client.delete(
            self.collection, points_selector=self.m.FilterSelector(filter=self._filter({"doc_id": doc_id}, None))
        )

    def payloads(self, must: dict[str, str] | None = None, kind: Kind = "chunk") -> Iterable[dict[str, Any]]:
        flt = self._filter(must, kind)

        def page(offset, limit):  # type: ignore[no-untyped-def]
            return self.client.scroll(
                self.collection, scroll_filter=flt, limit=limit, offset=offset, with_payload=True
            )

        return _scroll_payloads(page)

    def chunk_vectors(self, doc_id: str) -> list[tuple[dict[str, Any], np.ndarray]]:
        flt = self._filter({"doc_id": doc_id})

        def page(offset, limit):  # type: ignore[no-untyped-def]
            return self.client.scroll(
                self.collection, scroll_filter=flt, limit=limit, offset=offset, with_payload=True, with_vectors=[DENSE]
            )

        return _with_dense(_scroll(page))

    def chunk_hashes(self, doc_id: str) -> dict[str, dict[str, Any]]:
        return {p["chunk_hash"]: p for p in self.payloads({"doc_id": doc_id})}

    def documents(self, source: str | None = None) -> dict[str, dict[str, Any]]:
        return _documents_from(self.payloads({"source": source} if source else None))

    def count(self, must: dict[str, str] | None = None, kind: Kind = "chunk") -> int:
        return self.client.count(self.collection, count_filter=self._filter(must, kind), exact=True).count

    def query(self, dense, sparse, limit, must=None):  # type: ignore[no-untyped-def]
        m = self.m
        flt = self._filter(must)
        dense_v = dense.tolist() if dense is not None else None
        sparse_v = (
            m.SparseVector(indices=sparse.indices, values=sparse.values)
            if sparse is not None and sparse.indices
            else None
        )
        if dense_v is None and sparse_v is None:
            return []
        if dense_v is None or sparse_v is None:
            using, name = (DENSE, "dense") if dense_v is not None else (SPARSE, "lexical")
            result = self.client.query_points(
                self.collection, query=dense_v if dense_v is not None else sparse_v, using=using,
                query_filter=flt, limit=limit, with_payload=True,
            )
            return [Found(str(p.id), float(p.score), dict(p.payload or {}), (name,)) for p in result.points]
        depth = max(FUSION.depth, limit)
        fused = m.QueryRequest(
            prefetch=[
                m.Prefetch(query=dense_v, using=DENSE, limit=depth, filter=flt),
                m.Prefetch(query=sparse_v, using=SPARSE, limit=depth, filter=flt),
            ],
            query=m.RrfQuery(rrf=m.Rrf(k=FUSION.k, weights=[FUSION.dense_weight, FUSION.sparse_weight])),
            limit=limit,
            with_payload=True,
        )
        each = [
            m.QueryRequest(query=v, using=u, filter=flt, limit=depth, with_payload=False)
            for v, u in ((dense_v, DENSE), (sparse_v, SPARSE))
        ]
        fused_r, dense_r, sparse_r = self.client.query_batch_points(self.collection, [fused, *each])
        return _retrievers(fused_r.points, dense_r.points, sparse_r.points)

    def close(self) -> None:
        self.client.close()
