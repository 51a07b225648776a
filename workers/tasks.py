"""The ingestion stages: each loads the references in its message, calls one pipelines
function, records the result and hands the event id on along the flow
(workers/runtime/flow.py). The step runtime (workers/runtime/step.py) does the rest.

Message arguments are event ids only; content travels through ``State``
artifacts, so Flower and the broker never see document text.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from pipelines import diff as diffing
from pipelines.embed import DIMENSIONS
from pipelines.errors import PermanentError
from pipelines.graph import NER_LABELS
from pipelines.upsert import DocumentMeta, apply_plan
from schemas.documents import Chunk, ChunkPlan, ParsedDocument, RedactedDocument
from schemas.events import Event, content_version
from schemas.search import Mode, SearchRequest
from workers import dispatch, resources, sources
from workers.app import CONTENT_RESULT, app
from workers.config import settings
from workers.runtime import flow
from workers.runtime.step import step
from workers.state import State
from workers.telemetry import in_steps



def _parsed(st: State, event: Event) -> ParsedDocument | None:
    """The event's file, read and parsed; None when it changed or vanished since (a newer event follows)."""
    from pipelines.parse import parse_bytes

    s = settings()
    data = sources.read(event.source, event.key, s.max_document_bytes)
    if data is None or content_version([data]) != event.version:
        st.finish(event.event_id, "superseded")
        return None
    return parse_bytes(data, event.key, max_bytes=s.max_document_bytes)


@step("parse")
def parse(st: State, event: Event) -> None:
    doc = _parsed(st, event)
    if doc is None:
        return
    st.keep("parsed", event.event_id, doc)  # in this thread's memory only: raw text is never stored
    dispatch.hand_on_next("parse", event.event_id)


@step("redact")
def redact(st: State, event: Event) -> None:
    doc = st.kept("parsed", event.event_id)
    if doc is None:  # a redelivered or retried redact message: parse again, nothing raw was kept
        doc = _parsed(st, event)
        if doc is None:
            return
    texts = [e.text for e in doc.elements]
    headings = sorted({e.section for e in doc.elements if e.section} | ({doc.title} if doc.title else set()))
    done = in_steps(resources.redactor().redact_many, texts + headings)  # long documents report progress
    clean = {h: r.text for h, r in zip(headings, done[len(texts):])}
    counts: dict[str, int] = {}
    for r in done[: len(texts)]:
        for kind, n in r.counts.items():
            counts[kind] = counts.get(kind, 0) + n
    elements = [
        e.model_copy(update={"text": r.text, "section": clean.get(e.section) if e.section else None})
        for e, r in zip(doc.elements, done)
    ]
    title = clean.get(doc.title) if doc.title else None
    entities = list(dict.fromkeys(e for r in done for e in r.entities if e[1] in NER_LABELS))
    out = RedactedDocument(file_type=doc.file_type, title=title, elements=elements, pii_counts=counts, entities=entities)
    st.put_json("redacted", event.event_id, out.model_dump_json())
    dispatch.hand_on_next("redact", event.event_id)


@step("chunk")
def chunk(st: State, event: Event) -> None:
    doc = RedactedDocument.model_validate_json(st.get_json("redacted", event.event_id))
    chunks = resources.chunker().chunk(event.doc_id, doc)
    if not chunks:
        raise PermanentError("no text left to index after parsing")
    st.put_json("chunks", event.event_id, json.dumps([c.model_dump() for c in chunks]))
    dispatch.hand_on_next("chunk", event.event_id)


def _chunks(st: State, event_id: str) -> list[Chunk]:
    return [Chunk.model_validate(c) for c in json.loads(st.get_json("chunks", event_id))]


@step("diff")
def diff(st: State, event: Event) -> None:
    chunks = _chunks(st, event.event_id)
    indexed = resources.index().chunk_hashes(event.doc_id)
    chunk_plan = diffing.plan(chunks, indexed, force=event.force, space=resources.embedder().space)
    st.put_json("plan", event.event_id, chunk_plan.model_dump_json())
    if chunk_plan.embed:
        dispatch.hand_on_next("diff", event.event_id)
        return
    same_version = all(p.get("doc_version") == event.version for p in indexed.values())
    _upsert(st, event, vectors_needed=False, unchanged=same_version and not chunk_plan.delete)


@step("embed")
def embed(st: State, event: Event) -> None:
    chunks = {c.position: c for c in _chunks(st, event.event_id)}
    chunk_plan = ChunkPlan.model_validate_json(st.get_json("plan", event.event_id))
    vectors = in_steps(resources.embedder().embed, [chunks[p].text for p in chunk_plan.embed])
    st.put_vectors(event.event_id, vectors)
    dispatch.hand_on_next("embed", event.event_id)


@step("upsert")
def upsert(st: State, event: Event) -> None:
    _upsert(st, event, vectors_needed=True, unchanged=False)


def _upsert(st: State, event: Event, vectors_needed: bool, unchanged: bool) -> None:
    chunks = _chunks(st, event.event_id)
    chunk_plan = ChunkPlan.model_validate_json(st.get_json("plan", event.event_id))
    redacted = RedactedDocument.model_validate_json(st.get_json("redacted", event.event_id))
    vectors = st.get_vectors(event.event_id, DIMENSIONS) if vectors_needed else np.zeros((0, DIMENSIONS))
    meta = DocumentMeta(
        source=event.source,
        key=event.key,
        tenant=event.tenant,
        file_type=redacted.file_type,
        version=event.version,
        pii_counts=redacted.pii_counts,
        vectors=resources.embedder().space,
    )
    if not unchanged:
        apply_plan(resources.index(), chunks, chunk_plan, vectors, resources.bm25(), meta)
    counts = {
        "chunks": len(chunks),
        "chunks_embedded": len(chunk_plan.embed),
        "chunks_reused": len(chunk_plan.reuse),
        "chunks_deleted": len(chunk_plan.delete),
    }
    st.record_indexed(
        event.doc_id,
        event.version,
        key=event.key,
        source=event.source,
        tenant=event.tenant,
        file_type=redacted.file_type,
        last_event=event.event_id,
        pii_counts=redacted.pii_counts,
        stages=flow.route("parse", skip=frozenset() if chunk_plan.embed else frozenset({"embed"})),
        **counts,
    )
    from workers import graph_tasks  # late: it imports this module

    followups = graph_tasks.after_upsert(st, event, redacted.entities)  # keeps chunks and entities for them
    for name in ("chunks_embedded", "chunks_reused", "chunks_deleted"):
        st.add_counter(name, counts[name])
    st.finish(event.event_id, "unchanged" if unchanged else "done", release=not followups, **counts)
    st.drop_artifacts(event.event_id)


@step("delete")
def delete(st: State, event: Event) -> None:
    index = resources.index()
    removed = index.count({"doc_id": event.doc_id})
    index.delete_document(event.doc_id)
    st.record_deleted(event.doc_id, key=event.key, source=event.source, last_event=event.event_id)
    from workers import graph_tasks

    graph_tasks.after_delete(st, event)  # the graph and the summary forget the document
    st.add_counter("chunks_deleted", removed)
    st.finish(event.event_id, "deleted", chunks_deleted=removed)


@app.task(name="sluice.manifest", **CONTENT_RESULT)
def manifest(source: str | None = None) -> dict[str, dict[str, Any]]:
    """What the index holds for one source, or all: {doc_id: {key, source, tenant, version, chunks}}."""
    return resources.index().documents(source)


@app.task(name="sluice.search", **CONTENT_RESULT)
def search(request: dict[str, Any]) -> list[dict[str, Any]]:
    from pipelines.search import search as run_search

    req = SearchRequest.model_validate(request)
    if req.mode in (Mode.graph, Mode.mix):
        from workers.graph_tasks import graph_search

        return graph_search(req)
    hits = run_search(resources.index(), resources.embedder(), resources.bm25(), req, tenants=settings().tenants)
    return [h.model_dump() for h in hits]


@app.task(name="sluice.document", **CONTENT_RESULT)
def document(doc_id: str) -> list[dict[str, Any]]:
    """The indexed chunks of one document, in order (payloads without vectors)."""
    return sorted(resources.index().payloads({"doc_id": doc_id}), key=lambda p: p["position"])


@app.task(name="sluice.ping")
def ping() -> dict[str, int]:
    """Proves the query worker and its index answer; returns the number of indexed chunks."""
    return {"chunks": resources.index().count()}


@app.task(name="sluice.texts", **CONTENT_RESULT)
def texts(source: str) -> list[str]:
    """Every indexed chunk text of one source, in document order (benchmarks re-embed them)."""
    payloads = resources.index().payloads({"source": source})
    return [p["text"] for p in sorted(payloads, key=lambda p: (p["doc_id"], p["position"]))]
