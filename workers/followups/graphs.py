"""The index owner's entity graphs, loaded from the durable contributions on first use (see pipelines/graph.py).

``marker`` keys cache in Redis which document version the graph holds, so pipeline workers can skip
extraction for a version already applied."""

from __future__ import annotations

import logging
import threading
from functools import cache
from typing import TYPE_CHECKING, Any

from celery.signals import worker_ready

from workers.runtime import resources
from workers.runtime.config import settings
from workers.runtime.state import keys

if TYPE_CHECKING:
    from pipelines.graph_store import GraphSet

log = logging.getLogger("sluice.graph")
_lock = threading.Lock()


def marker(doc_id: str) -> str:
    """Redis key: the document version whose contribution the query worker applied (a cache)."""
    return keys.graph_version(doc_id)


def graphs() -> GraphSet:
    """The query worker's graphs, loaded from the durable contributions on first use."""
    with _lock:
        return _graphs()


@cache
def _graphs() -> GraphSet:
    from pipelines.graph_store import GraphSet

    config = settings()
    graph_set = GraphSet.open(config.data_dir / "graph" / "contributions.sqlite3", per_tenant=bool(config.tenants))
    state = resources.state()
    versions = graph_set.store.versions()
    pipe = state.r.pipeline(transaction=False)
    for key in state.r.scan_iter(marker("*"), count=1000):  # the Redis cache follows the durable store
        if key.decode().removeprefix(marker("")) not in versions:
            pipe.delete(key)
    for doc_id, version in versions.items():
        pipe.set(marker(doc_id), version)
    pipe.execute()
    stats = [g.stats() for g in graph_set.graphs.values()]
    log.info("graph loaded in %.2fs: %d documents, %d entities, %d edges", graph_set.load_seconds,
             sum(x.documents for x in stats), sum(x.entities for x in stats), sum(x.edges for x in stats))
    return graph_set


@worker_ready.connect
def _load_at_start(sender: Any = None, **_: Any) -> None:
    queues = {q.name for q in getattr(getattr(sender, "task_consumer", None), "queues", None) or []}
    if "index" in queues:  # the query worker: load before the first question, not during it
        graphs()
