"""What the index owner answers: searches, documents, manifests and graph questions.

Query tasks return indexed text, keys and entities to their caller only: the worker's "succeeded"
log line and Flower's task-succeeded event show the result cut to its shape (``CONTENT_RESULT``).
"""

from __future__ import annotations

from typing import Any

from celery.signals import worker_ready

from pipelines.errors import PermanentError
from schemas.search import Mode, SearchRequest, tenant_refusal
from workers.followups.graphs import graphs
from workers.runtime import resources, tracing
from workers.runtime.app import CONTENT_RESULT, app
from workers.runtime.config import settings


@app.task(name="sluice.manifest", **CONTENT_RESULT)
def manifest(source: str | None = None) -> dict[str, dict[str, Any]]:
    """What the index holds for one source, or all: {doc_id: {key, source, tenant, version, chunks}}."""
    return resources.index().documents(source)


@app.task(name="sluice.search", **CONTENT_RESULT)
def search(request: dict[str, Any]) -> list[dict[str, Any]]:
    from pipelines.search import search as run_search

    req = SearchRequest.model_validate(request)
    if req.mode in (Mode.graph, Mode.mix):
        return graph_search(req)
    with tracing.span("sluice.index.search", mode=req.mode.value, k=req.k):
        hits = run_search(resources.index(), resources.embedder(), resources.bm25(), req, tenants=settings().tenants)
    return [h.model_dump() for h in hits]


@app.task(name="sluice.document", **CONTENT_RESULT)
def document(doc_id: str) -> list[dict[str, Any]]:
    """The indexed chunks of one document, in order (payloads without vectors)."""
    return sorted(resources.index().payloads({"doc_id": doc_id}), key=lambda p: p["position"])


@app.task(name="sluice.generation")
def generation(op: str, params: dict[str, Any]) -> dict[str, Any]:
    """Every `sluice generation` command, answered by the index owner; a refusal comes back as ``refused``."""
    manager = resources.generations()
    try:
        if op == "list":
            return manager.overview()
        if op == "create":
            return manager.create(params.get("backend") or settings().embed_backend).model_dump(mode="json")
        if op == "compare":
            return manager.compare(params.get("name"), int(params.get("probes") or 200), params.get("judged"))
        if op == "switch":
            return manager.switch(params.get("name"), bool(params.get("force")))
        if op == "rollback":
            return manager.rollback()
        if op == "drop":
            return manager.drop(str(params["name"]))
    except ValueError as e:
        return {"refused": str(e)}
    return {"refused": f"unknown generation command {op!r}"}


@worker_ready.connect
def _open_generations(sender: Any = None, **_: Any) -> None:
    """The index owner opens its generations at start: a half-done change is recovered, a build resumes,
    and a live generation in another space than the configured embedder's is reported in the log."""
    queues = {q.name for q in getattr(getattr(sender, "task_consumer", None), "queues", None) or []}
    if "index" in queues:
        resources.generations()


@app.task(name="sluice.ping")
def ping() -> dict[str, Any]:
    """Proves the query worker and its index answer: indexed chunks, the live generation, builds running."""
    manager = resources.generations()
    live = manager.live()
    building = {g.name: f"{g.copied}/{g.documents} documents" for g in manager.registry.generations.values()
                if g.status == "building"}
    note = manager.mismatch()
    return {"chunks": resources.index().count(), "generation": live.name, "space": live.space,
            **({"building": building} if building else {}), **({"note": note} if note else {})}


@app.task(name="sluice.texts", **CONTENT_RESULT)
def texts(source: str) -> list[str]:
    """Every indexed chunk text of one source, in document order (benchmarks re-embed them)."""
    payloads = resources.index().payloads({"source": source})
    return [p["text"] for p in sorted(payloads, key=lambda p: (p["doc_id"], p["position"]))]


@app.task(name="sluice.graph_query", **CONTENT_RESULT)
def graph_query(op: str, params: dict[str, Any]) -> Any:
    """Every graph read, answered from the query worker's graph (see pipelines/graph.py)."""
    from pipelines.graph_query import run

    return run(graphs(), resources.index(), op, params)


@app.task(name="sluice.graph_communities")
def graph_communities() -> int:
    """Beat: recompute communities of every graph that changed, so the API answers from cache."""
    graph_set = graphs()
    return sum(len(graph_set.communities(None if part == "*" else part)) for part in list(graph_set.graphs))


def graph_search(req: SearchRequest) -> list[dict[str, Any]]:
    """Modes ``graph`` and ``mix`` of the search task (query worker)."""
    from pipelines.graph_query import graph_hits, mix
    from pipelines.search import search, where

    config = settings()
    if refusal := tenant_refusal(config.tenants, req.scoped_tenant):
        raise PermanentError(refusal)
    graph_set = graphs()
    with graph_set.lock:
        hits = graph_hits(graph_set.graph(req.scoped_tenant), resources.index(), req.q, req.k, where(req), config.graph_hops,
                          req.group_by_document)
    if req.mode == Mode.mix:
        hybrid = search(resources.index(), resources.embedder(), resources.bm25(),
                        req.model_copy(update={"mode": Mode.hybrid}), tenants=config.tenants)
        hits = mix(hits, hybrid, req.k, req.group_by_document)
    return [h.model_dump() for h in hits]
