"""Graph stage tasks: extraction on pipeline workers, the graph itself in the query worker.

Flow after ``upsert`` (``after_upsert``): the chunk list and the named entities
the redact stage recognised are kept as a ``followup`` artifact (upsert drops
the others); ``graph_extract`` locates those entities in each chunk on a
pipeline worker (never in the query worker's threads); ``summarise``
(workers/summary_tasks.py) stores the document's summary on the same worker;
``graph_apply`` hands the contribution to the query worker, which persists it
(SQLite under the data dir) and applies it to its NetworkX graph, but only if
the index still holds that very version of the document, indexes the summary
and releases the event. A delete reaches the graph inside the ``delete`` stage,
which already runs in the query worker.

Follow-up stages never change the event's status: the event is done when it
is searchable; a graph or summary failure is dead-lettered under its own stage
name and noted on the document.
"""

from __future__ import annotations

import json
import logging
import threading
from functools import cache
from typing import TYPE_CHECKING, Any

from celery.signals import worker_ready

from pipelines.errors import PermanentError
from schemas.documents import Chunk
from schemas.events import Event
from schemas.graph import DocContribution
from schemas.search import Mode, SearchRequest, tenant_refusal
from workers import dispatch, resources
from workers.app import CONTENT_RESULT, app
from workers.config import settings
from workers.runtime import flow
from workers.runtime.step import step
from workers.state import Expired, P, State

if TYPE_CHECKING:
    from pipelines.graph import GraphSet

log = logging.getLogger("sluice.graph")
FOLLOWUP = "followup"  # artifact kind: the chunk list, kept for graph + summary after upsert
_lock = threading.Lock()


def marker(doc_id: str) -> str:
    """Redis key: the document version whose contribution the query worker applied (a cache)."""
    return f"{P}graphver:{doc_id}"


def followup_kept(st: State, event_id: str) -> tuple[list[Chunk], list[tuple[str, str]]]:
    """The chunks and named entities ``after_upsert`` kept, read in one go."""
    kept = json.loads(st.get_json(FOLLOWUP, event_id))
    return [Chunk.model_validate(c) for c in kept["chunks"]], [(s, label) for s, label in kept["entities"]]


def followup_chunks(st: State, event_id: str) -> list[Chunk]:
    return followup_kept(st, event_id)[0]


# --------------------------------------------------------------------------- hooks called by workers/tasks.py


def after_upsert(st: State, event: Event, entities: list[tuple[str, str]]) -> bool:
    """Keep the chunks for the follow-up stages, unless graph and summary are already current.

    Returns whether follow-ups started: the event then stays in flight until the
    last of them (``graph_apply``) releases it, so admission control bounds them too.
    """
    from workers import summary_tasks

    if not settings().followups:
        return False
    raw = st.r.get(marker(event.doc_id))
    needs_summary = summary_tasks.refresh(st, event)
    if raw and raw.decode() == event.version and not needs_summary and not event.force:
        return False
    kept = {"chunks": json.loads(st.get_json("chunks", event.event_id)), "entities": entities}
    st.put_json(FOLLOWUP, event.event_id, json.dumps(kept))
    dispatch.hand_on(flow.AFTER_UPSERT, event.event_id)
    return True


def after_delete(st: State, event: Event) -> None:
    """Runs in the query worker's ``delete`` stage: the document leaves the graph and loses its summary."""
    from workers import summary_tasks

    graphs().forget(event.doc_id)
    st.r.delete(marker(event.doc_id))
    summary_tasks.forget(st, event.doc_id)


# --------------------------------------------------------------------------- pipeline side


@step("graph_extract")
def graph_extract(st: State, event: Event) -> None:
    raw = st.r.get(marker(event.doc_id))
    if raw and raw.decode() == event.version and not event.force:
        return  # this version is in the graph already
    from pipelines.graph import extract

    chunks, entities = followup_kept(st, event.event_id)
    contribution = extract(
        event.doc_id, event.version, [(c.position, c.hash, c.text) for c in chunks], entities,
        tenant=event.tenant, key=event.key,
    )
    st.put_json("graphcontrib", event.event_id, contribution.model_dump_json())
    from workers import relation_tasks

    relation_tasks.request(st, contribution, chunks)  # typed relations, when a model is configured


# --------------------------------------------------------------------------- query worker side


def graphs() -> GraphSet:
    """The query worker's graphs, loaded from the durable contributions on first use."""
    with _lock:
        return _graphs()


@cache
def _graphs() -> GraphSet:
    from pipelines.graph import GraphSet

    s = settings()
    gs = GraphSet.open(s.data_dir / "graph" / "contributions.sqlite3", per_tenant=bool(s.tenants))
    st = resources.state()
    versions = gs.store.versions()
    pipe = st.r.pipeline(transaction=False)
    for key in st.r.scan_iter(marker("*"), count=1000):  # the Redis cache follows the durable store
        if key.decode().removeprefix(marker("")) not in versions:
            pipe.delete(key)
    for doc_id, version in versions.items():
        pipe.set(marker(doc_id), version)
    pipe.execute()
    stats = [g.stats() for g in gs.graphs.values()]
    log.info("graph loaded in %.2fs: %d documents, %d entities, %d edges", gs.load_seconds,
             sum(x.documents for x in stats), sum(x.entities for x in stats), sum(x.edges for x in stats))
    return gs


@worker_ready.connect
def _load_at_start(sender: Any = None, **_: Any) -> None:
    queues = {q.name for q in getattr(getattr(sender, "task_consumer", None), "queues", None) or []}
    if "index" in queues:  # the query worker: load before the first question, not during it
        graphs()


@step("graph_apply")
def graph_apply(st: State, event: Event) -> None:
    """The last follow-up, in the index owner: apply the document's contribution (if still current)
    and index its summary; the step runtime then releases the event whatever happened."""
    from workers import summary_tasks

    _apply(st, event.event_id)
    summary_tasks.index_summary_of(st, event.doc_id)


def _apply(st: State, event_id: str) -> str:
    try:
        c = DocContribution.model_validate_json(st.get_json("graphcontrib", event_id))
    except Expired:
        return "expired"  # nothing extracted (already current, superseded or failed)
    gs = graphs()
    with gs.lock:  # checked and applied under the lock a delete's forget also takes
        indexed = {p.get("doc_version") for p in resources.index().chunk_hashes(c.doc_id).values()}
        if indexed == {c.version}:
            gs.apply(c)
            st.r.set(marker(c.doc_id), c.version)
            outcome = "applied"
        else:
            outcome = "stale"  # changed or deleted since; its newer event brings its own contribution
    st.drop("graphcontrib", event_id)
    return outcome


@app.task(name="sluice.graph_query", **CONTENT_RESULT)
def graph_query(op: str, params: dict[str, Any]) -> Any:
    """Every graph read, answered from the query worker's graph (see pipelines/graph.py)."""
    from pipelines.graph_query import run

    return run(graphs(), resources.index(), op, params)


@app.task(name="sluice.graph_communities")
def graph_communities() -> int:
    """Beat: recompute communities of every graph that changed, so the API answers from cache."""
    gs = graphs()
    return sum(len(gs.communities(None if part == "*" else part)) for part in list(gs.graphs))


def graph_search(req: SearchRequest) -> list[dict[str, Any]]:
    """Modes ``graph`` and ``mix`` of the search task (query worker)."""
    from pipelines.graph_query import graph_hits, mix
    from pipelines.search import search, where

    s = settings()
    if refusal := tenant_refusal(s.tenants, req.scoped_tenant):
        raise PermanentError(refusal)
    gs = graphs()
    with gs.lock:
        hits = graph_hits(gs.graph(req.scoped_tenant), resources.index(), req.q, req.k, where(req), s.graph_hops,
                          req.group_by_document)
    if req.mode == Mode.mix:
        hybrid = search(resources.index(), resources.embedder(), resources.bm25(),
                        req.model_copy(update={"mode": Mode.hybrid}), tenants=s.tenants)
        hits = mix(hits, hybrid, req.k, req.group_by_document)
    return [h.model_dump() for h in hits]
