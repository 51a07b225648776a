"""The vector index: one small interface, two implementations.

Qdrant Edge is the embedded default (one process owns the directory);
qdrant-client talks to a Qdrant server (tested against its in-memory mode).
Each point is one chunk: a named dense vector, a BM25 sparse vector and a
payload. Point ids are uuid5(doc id, chunk hash, version), so replays are
harmless and two versions of a document never share a point: a change writes
the new version hidden, flips it visible in one step and then deletes the old
one (pipelines/visibility.py), so a search sees one whole version of every
document. Qdrant is the source of truth for what is indexed: the chunk hashes
and the document version live in the payloads.

Besides chunks, the index holds one point per document summary (payload
``kind: "summary"``, id uuid5(doc id, "summary")), so summaries are searched
with the same vectors and filters. Every chunk-level operation (diff's chunk
hashes, listings, counts, manifests) sees chunks only: a ``Where`` selects
chunks unless it names another kind, and chunk points carry no ``kind``.
"""

from __future__ import annotations

import threading
import uuid
from itertools import islice
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from pipelines.failpoints import failpoint
from pipelines.records import CollectionRecord, FileRecord
from pipelines.visibility import Change, Visibility

DENSE = "dense"
SPARSE = "bm25"
SCHEMA_VERSION = 1
KEYWORD_FIELDS = ("doc_id", "chunk_hash", "tenant", "source", "key", "file_type", "doc_version", "prefixes", "kind")
DATETIME_FIELDS = ("created_at", "updated_at")
_NAMESPACE = uuid.UUID("5b0f5a3e-8c1e-4b8e-9a53-6c1f1d1c0a11")
SUMMARY = "summary"  # payload ``kind`` of summary points; chunk points have no ``kind``
Kind = Literal["chunk", "summary"] | None  # None: every point (deletes of a whole document)


def point_id(doc_id: str, chunk_hash: str, version: str = "") -> str:
    """A chunk's point is one version's (``version``); a summary point has none and is replaced in place."""
    return str(uuid.uuid5(_NAMESPACE, f"{doc_id}:{chunk_hash}:{version}" if version else f"{doc_id}:{chunk_hash}"))


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
    version: str = ""  # the document version a chunk point belongs to ("" for a summary point)

    @property
    def id(self) -> str:
        return point_id(self.doc_id, self.chunk_hash, self.version)


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
    def write_version(self, doc_id: str, points: Sequence[IndexPoint]) -> None:
        """Make ``points`` the document's chunks, atomically for readers."""
        ...
    def write_unread(self, versions: dict[str, Sequence[IndexPoint]]) -> None:
        """Make each document's points the given ones, in an index no search reads yet."""
        ...
    def point_ids(self, doc_id: str) -> set[str]: ...
    def delete_chunks(self, doc_id: str, hashes: Iterable[str]) -> None: ...
    def delete_document(self, doc_id: str) -> None: ...
    def chunk_hashes(self, doc_id: str) -> dict[str, dict[str, Any]]: ...
    def documents(self, source: str | None = None) -> dict[str, dict[str, Any]]: ...
    def payloads(self, must: dict[str, str] | None = None, kind: Kind = "chunk", limit: int | None = None
                 ) -> Iterable[dict[str, Any]]: ...
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


def _scroll_payloads(scroll_page, limit: int | None = None) -> Iterable[dict[str, Any]]:  # type: ignore[no-untyped-def]
    """Payloads page by page (pages no longer than ``limit``, when the caller wants no more)."""
    return (dict(record.payload or {}) for record in _scroll(scroll_page, min(limit or 512, 512)))


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


class _Versions(ABC):
    """The one way a document's chunks change, shared by both backends (see pipelines/visibility.py)."""

    visibility: Visibility
    _writing: threading.Lock

    @abstractmethod
    def upsert(self, points: Sequence[IndexPoint]) -> None: ...
    @abstractmethod
    def _delete_ids(self, ids: Iterable[str]) -> None: ...
    @abstractmethod
    def _chunk_ids(self, doc_id: str) -> set[str]:
        """The ids of the document's chunk points a reader sees now."""

    def write_version(self, doc_id: str, points: Sequence[IndexPoint]) -> None:
        with self._writing:
            current = self._chunk_ids(doc_id)
            wanted = {p.id for p in points}
            change = Change(doc_id, frozenset(wanted - current), frozenset(current - wanted))
            if not change.fresh and not change.stale:  # the same version again: in place
                self.upsert(points)
                return
            self.visibility.begin(change)
            try:
                self.upsert(points)
                failpoint("index.before_flip")
            except BaseException:
                self._delete_ids(change.fresh)
                self.visibility.end(doc_id)
                raise
            self.visibility.flip(doc_id)
            failpoint("index.after_flip")
            self._delete_ids(change.stale)
            self.visibility.end(doc_id)

    def write_unread(self, versions: dict[str, Sequence[IndexPoint]]) -> None:
        """For an index no search reads (a generation being built): one upsert of every document's points,
        then one delete of the points they replace; no journal, no waiting for readers. A crash between the
        two leaves extra points, which the build's next copy (it compares point ids) replaces."""
        with self._writing:
            stale = set().union(*(self._chunk_ids(doc_id) - {p.id for p in points} for doc_id, points in versions.items()))
            self.upsert([p for points in versions.values() for p in points])
            self._delete_ids(stale)

    def point_ids(self, doc_id: str) -> set[str]:
        """The ids of the document's chunk points a reader sees now."""
        return self._chunk_ids(doc_id)

    def _recover(self) -> None:
        """Roll back a change a crash left hidden, or finish one that had flipped."""
        for change in self.visibility.unfinished():
            self._delete_ids(change.stale if change.flipped else change.fresh)
            self.visibility.end(change.doc_id)


class EdgeIndex(_Versions):
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
        self._writing = threading.Lock()
        self.visibility = Visibility(FileRecord(path.with_name(path.name + ".changes.json")))
        self._recover()

    def _filter(self, must: Where | dict[str, str] | None, kind: Kind = "chunk",  # type: ignore[no-untyped-def]
                hidden: frozenset[str] = frozenset()):
        where = Where.of(must, kind)
        if not where and not hidden:
            return None
        q = self.q
        conditions = [q.FieldCondition(key=k, match=q.MatchValue(v)) for k, v in where.equals.items()]
        conditions += [
            q.FieldCondition(key=k, range=q.RangeDateTime(gte=lo, lte=hi)) for k, (lo, hi) in where.ranges.items()
        ]
        summary = q.FieldCondition(key="kind", match=q.MatchValue(SUMMARY))
        if where.kind == "summary":
            conditions.append(summary)
        must_not = ([summary] if where.kind == "chunk" else []) + ([q.HasIdCondition(set(hidden))] if hidden else [])
        return q.Filter(must=conditions or None, must_not=must_not or None)

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

    def delete_chunks(self, doc_id: str, hashes: Iterable[str]) -> None:
        self._delete_ids(point_id(doc_id, h) for h in hashes)

    def _delete_ids(self, ids: Iterable[str]) -> None:
        found: list[int | str | uuid.UUID] = list(ids)
        if found:
            self.shard.update(self.q.UpdateOperation.delete_points(found))

    def _chunk_ids(self, doc_id: str) -> set[str]:
        q = self.q
        with self.visibility.reading() as hidden:
            flt = self._filter({"doc_id": doc_id}, "chunk", hidden)

            def page(offset, limit):  # type: ignore[no-untyped-def]
                return self.shard.scroll(q.ScrollRequest(offset=offset, limit=limit, filter=flt, with_payload=False))

            return {str(r.id) for r in _scroll(page)}

    def delete_document(self, doc_id: str) -> None:
        with self._writing:
            self.shard.update(self.q.UpdateOperation.delete_points_by_filter(self._filter({"doc_id": doc_id}, None)))

    def payloads(self, must: dict[str, str] | None = None, kind: Kind = "chunk", limit: int | None = None
                 ) -> Iterable[dict[str, Any]]:
        q = self.q
        with self.visibility.reading() as hidden:
            flt = self._filter(must, kind, hidden)

            def page(offset, size):  # type: ignore[no-untyped-def]
                return self.shard.scroll(q.ScrollRequest(offset=offset, limit=size, filter=flt, with_payload=True))

            return list(islice(_scroll_payloads(page, limit), limit))

    def chunk_vectors(self, doc_id: str) -> list[tuple[dict[str, Any], np.ndarray]]:
        q = self.q
        with self.visibility.reading() as hidden:
            flt = self._filter({"doc_id": doc_id}, "chunk", hidden)

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
        with self.visibility.reading() as hidden:
            return self.shard.count(self.q.CountRequest(filter=self._filter(must, kind, hidden), exact=True))

    def query(self, dense, sparse, limit, must=None):  # type: ignore[no-untyped-def]
        with self.visibility.reading() as hidden:
            return self._query(dense, sparse, limit, self._filter(must, "chunk", hidden))

    def _query(self, dense, sparse, limit, flt):  # type: ignore[no-untyped-def]
        q = self.q
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


class _OneAtATime:
    """A client whose calls run one at a time (the query worker searches and writes from several threads)."""

    def __init__(self, client: Any) -> None:
        self._client, self._lock = client, threading.RLock()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        def locked(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                return attr(*args, **kwargs)

        return locked


def server_client(url: str, api_key: str | None = None) -> Any:
    """A qdrant-client for ``url`` (``:memory:``: local mode, which is not thread-safe: one call at a time)."""
    from qdrant_client import QdrantClient

    if url == ":memory:":
        return _OneAtATime(QdrantClient(location=":memory:"))
    return QdrantClient(url=url, api_key=api_key)


class ServerIndex(_Versions):
    """A collection on a Qdrant server through qdrant-client (``location=':memory:'`` in tests)."""

    def __init__(self, url: str, collection: str, api_key: str | None = None, client: Any = None) -> None:
        """``client``: one already open to the same server (the generations of an index share it, so an
        alias can name any of them, and in local mode they live in one memory)."""
        from qdrant_client import models

        self.m = models
        self.collection = collection
        self.client: Any = client if client is not None else server_client(url, api_key)
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
        self._shared_client = client is not None
        self._writing = threading.Lock()
        shared = url != ":memory:"  # other query workers may read the same server
        self.visibility = Visibility(CollectionRecord(self.client, models, f"{collection}-changes"),
                                     grace_s=1.0 if shared else 0.0, shared=shared)
        self._recover()

    def _filter(self, must: Where | dict[str, str] | None, kind: Kind = "chunk",  # type: ignore[no-untyped-def]
                hidden: frozenset[str] = frozenset()):
        where = Where.of(must, kind)
        if not where and not hidden:
            return None
        m = self.m
        conditions = [m.FieldCondition(key=k, match=m.MatchValue(value=v)) for k, v in where.equals.items()]
        conditions += [
            m.FieldCondition(key=k, range=m.DatetimeRange(gte=lo, lte=hi)) for k, (lo, hi) in where.ranges.items()
        ]
        summary = m.FieldCondition(key="kind", match=m.MatchValue(value=SUMMARY))
        if where.kind == "summary":
            conditions.append(summary)
        must_not = ([summary] if where.kind == "chunk" else []) + ([m.HasIdCondition(has_id=sorted(hidden))] if hidden else [])
        return m.Filter(must=conditions or None, must_not=must_not or None)

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

    def delete_chunks(self, doc_id: str, hashes: Iterable[str]) -> None:
        self._delete_ids(point_id(doc_id, h) for h in hashes)

    def _delete_ids(self, ids: Iterable[str]) -> None:
        found: list[int | str | uuid.UUID] = list(ids)
        if found:
            self.client.delete(self.collection, points_selector=self.m.PointIdsList(points=found))

    def delete_document(self, doc_id: str) -> None:
        with self._writing:
            self.client.delete(
                self.collection, points_selector=self.m.FilterSelector(filter=self._filter({"doc_id": doc_id}, None))
            )

    def _scroll_records(self, flt: Any, limit: int | None = None, **options: Any) -> list[Any]:
        def page(offset, size):  # type: ignore[no-untyped-def]
            return self.client.scroll(self.collection, scroll_filter=flt, limit=size, offset=offset, **options)

        return list(islice(_scroll(page, min(limit or 512, 512)), limit))

    def _chunk_ids(self, doc_id: str) -> set[str]:
        with self.visibility.reading() as hidden:
            return {str(r.id) for r in self._scroll_records(self._filter({"doc_id": doc_id}, "chunk", hidden))}

    def payloads(self, must: dict[str, str] | None = None, kind: Kind = "chunk", limit: int | None = None
                 ) -> Iterable[dict[str, Any]]:
        with self.visibility.reading() as hidden:
            records = self._scroll_records(self._filter(must, kind, hidden), limit, with_payload=True)
            return [dict(r.payload or {}) for r in records]

    def chunk_vectors(self, doc_id: str) -> list[tuple[dict[str, Any], np.ndarray]]:
        with self.visibility.reading() as hidden:
            flt = self._filter({"doc_id": doc_id}, "chunk", hidden)
            return _with_dense(self._scroll_records(flt, with_payload=True, with_vectors=[DENSE]))

    def chunk_hashes(self, doc_id: str) -> dict[str, dict[str, Any]]:
        return {p["chunk_hash"]: p for p in self.payloads({"doc_id": doc_id})}

    def documents(self, source: str | None = None) -> dict[str, dict[str, Any]]:
        return _documents_from(self.payloads({"source": source} if source else None))

    def count(self, must: dict[str, str] | None = None, kind: Kind = "chunk") -> int:
        with self.visibility.reading() as hidden:
            return self.client.count(self.collection, count_filter=self._filter(must, kind, hidden), exact=True).count

    def query(self, dense, sparse, limit, must=None):  # type: ignore[no-untyped-def]
        with self.visibility.reading() as hidden:
            return self._query(dense, sparse, limit, self._filter(must, "chunk", hidden))

    def _query(self, dense, sparse, limit, flt):  # type: ignore[no-untyped-def]
        m = self.m
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
        if not self._shared_client:
            self.client.close()
