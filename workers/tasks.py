"""Celery tasks: each loads the references in its message, calls one pipelines
function, records the result and hands the event id to the next stage.

Message arguments are event ids only; content travels through ``State``
artifacts, so Flower and the broker never see document text.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import signal
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import redis
from celery.exceptions import SoftTimeLimitExceeded

from pipelines import diff as diffing
from pipelines.embed import DIMENSIONS
from pipelines.errors import PermanentError, TransientError
from pipelines.graph import NER_LABELS
from pipelines.upsert import DocumentMeta, apply_plan
from schemas.documents import Chunk, ChunkPlan, ParsedDocument, RedactedDocument
from schemas.events import Event
from schemas.search import Mode, SearchRequest
from workers import dispatch, resources, sources
from workers.app import CONTENT_RESULT, app
from workers.config import settings
from workers.runtime import flow
from workers.state import State
from workers.telemetry import count, in_steps, record

log = logging.getLogger("sluice.tasks")
TRANSIENT = (TransientError, redis.ConnectionError, redis.TimeoutError, ConnectionError, TimeoutError)


def _backoff(retries: int) -> float:
    base = settings().retry_backoff_s * (2**retries)
    return min(base, 300.0) * random.uniform(0.5, 1.5)


def retry_later(name: str, event_id: str, retries: int, retry: Callable[..., Any] | None, exc: Exception) -> str:
    """Back off and run the stage again: Celery's own retry for a delivered task; a stage that ran
    in place is published again, and its later retries take the delivered path."""
    if retry is None:
        app.tasks[f"sluice.{name}"].apply_async((event_id,), countdown=_backoff(0), retries=1)
        return "retry"
    raise retry(countdown=_backoff(retries), exc=exc)


BODIES: dict[str, Callable[[State, Event], None]] = {}
"""Each stage's body by name (tests run one under the stage runtime without a broker)."""


def stage(name: str) -> Callable[[Callable[[State, Event], None]], Any]:
    """Wrap a stage body with idempotency, supersession, retries and dead letters."""

    def wrap(body: Callable[[State, Event], None]) -> Any:
        BODIES[name] = body
        @app.task(name=f"sluice.{name}", bind=True, max_retries=None, ignore_result=True, self_timed=True)
        def task(self: Any, event_id: str, limit_s: float | None = None) -> str:
            return _run(name, body, event_id, self.request.retries, self.retry, limit_s)

        dispatch.runs_in_place(name, lambda event_id: _run(name, body, event_id, 0, None))
        return task

    return wrap


def _run(name: str, body: Callable[[State, Event], None], event_id: str, retries: int,
         retry: Callable[..., Any] | None, limit_s: float | None = None) -> str:
    """One stage for one event; ``retry`` is None when it runs in place after the previous stage.

    ``limit_s`` is this stage's own time limit (the ingress gives parse one); the stages it
    hands on in place run after it, outside it, under the task's general limit.
    """
    st = resources.state()
    event = st.begin_stage(name, event_id)
    if event == "superseded":
        st.finish(event_id, "superseded")
    if isinstance(event, str):
        return event
    started, cpu_started, outcome = time.perf_counter(), time.thread_time(), "retry"  # unless the attempt returns
    try:
        with dispatch.collecting() as chain:
            outcome = _attempt(name, body, st, event, retries, retry, limit_s)
    finally:
        seconds, cpu_s = time.perf_counter() - started, time.thread_time() - cpu_started
        if outcome != "ok":
            record(name, seconds, outcome, cpu_s)
    if outcome != "ok":
        return outcome
    dispatch.run(chain)
    pipe = st.r.pipeline(transaction=False)  # its counts and its done mark in one round trip
    count(pipe, name, seconds, outcome, cpu_s)
    st.mark_stage_done(name, event_id, pipe)
    pipe.execute()
    return outcome


def _attempt(name: str, body: Callable[[State, Event], None], st: State, event: Event, retries: int,
             retry: Callable[..., Any] | None, limit_s: float | None) -> str:
    event_id = event.event_id
    try:
        with _alarm(limit_s):
            body(st, event)
    except SoftTimeLimitExceeded:
        return _fail(st, event_id, name, f"{name} took longer than its time limit")
    except PermanentError as exc:
        if isinstance(exc.__cause__, SoftTimeLimitExceeded):  # a parser wrapped the limit
            return _fail(st, event_id, name, f"{name} took longer than its time limit")
        return _fail(st, event_id, name, str(exc))
    except TRANSIENT as exc:
        if retries >= settings().max_retries:
            return _fail(st, event_id, name, f"gave up after {retries} retries: {exc}")
        return retry_later(name, event_id, retries, retry, exc)
    except Exception as exc:  # a bug: keep the event, tell the operator (where, never the message:
        # an exception's text can quote the document it choked on)
        where = "".join(traceback.format_tb(exc.__traceback__)[-3:])
        log.error("stage %s failed for event %s: %s\n%s", name, event_id, type(exc).__name__, where)
        return _fail(st, event_id, name, f"internal error: {type(exc).__name__} (see the worker log)")
    return "ok"


@contextmanager
def _alarm(seconds: float | None) -> Iterator[None]:
    """Raise SoftTimeLimitExceeded after ``seconds`` (SIGALRM: the main thread of a prefork child or
    a solo worker; elsewhere only the task's general limit applies)."""
    if not seconds or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(*_: Any) -> None:
        raise SoftTimeLimitExceeded()

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _fail(st: State, event_id: str, stage_name: str, reason: str) -> str:
    st.dead_letter(event_id, stage_name, reason)
    st.finish(event_id, "failed", error=reason, failed_stage=stage_name)
    event = st.event(event_id)
    st.record_failed(event.doc_id, event.version, stage_name, reason, last_event=event_id, key=event.key)
    st.drop_artifacts(event_id)
    return "failed"


def _parsed(st: State, event: Event) -> ParsedDocument | None:
    """The event's file, read and parsed; None when it changed or vanished since (a newer event follows)."""
    from pipelines.parse import parse_bytes

    s = settings()
    data = sources.read(event.source, event.key, s.max_document_bytes)
    if data is None or hashlib.sha256(data).hexdigest() != event.version:
        st.finish(event.event_id, "superseded")
        return None
    return parse_bytes(data, event.key, max_bytes=s.max_document_bytes)


@stage("parse")
def parse(st: State, event: Event) -> None:
    doc = _parsed(st, event)
    if doc is None:
        return
    st.keep("parsed", event.event_id, doc)  # in this thread's memory only: raw text is never stored
    dispatch.hand_on_next("parse", event.event_id)


@stage("redact")
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


@stage("chunk")
def chunk(st: State, event: Event) -> None:
    doc = RedactedDocument.model_validate_json(st.get_json("redacted", event.event_id))
    chunks = resources.chunker().chunk(event.doc_id, doc)
    if not chunks:
        raise PermanentError("no text left to index after parsing")
    st.put_json("chunks", event.event_id, json.dumps([c.model_dump() for c in chunks]))
    dispatch.hand_on_next("chunk", event.event_id)


def _chunks(st: State, event_id: str) -> list[Chunk]:
    return [Chunk.model_validate(c) for c in json.loads(st.get_json("chunks", event_id))]


@stage("diff")
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


@stage("embed")
def embed(st: State, event: Event) -> None:
    chunks = {c.position: c for c in _chunks(st, event.event_id)}
    chunk_plan = ChunkPlan.model_validate_json(st.get_json("plan", event.event_id))
    vectors = in_steps(resources.embedder().embed, [chunks[p].text for p in chunk_plan.embed])
    st.put_vectors(event.event_id, vectors)
    dispatch.hand_on_next("embed", event.event_id)


@stage("upsert")
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


@stage("delete")
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
    tenants = settings().tenants
    hits = run_search(resources.index(), resources.embedder(), resources.bm25(), req, require_tenant=bool(tenants))
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
