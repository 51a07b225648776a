"""The route of an event through sluice, as data: the one place that names the stage order.

Read this module to name every step, the queue it runs on and what follows it.
Steps hand on by name through ``next_step`` (workers/runtime/dispatch.py), so no stage
imports the next one, and the queues, the default worker queues, the stage
marks and the stages recorded per document are all derived from here.

    create/modify/reindex  parse ==> redact -> chunk -> diff -> embed -> upsert
                           (diff goes straight to the upsert's work when no chunk needs embedding)
    delete                 delete
    after upsert           graph_extract -> summarise -> graph_apply   (follow-ups)
    after delete           the delete stage forgets the document's graph and summary itself

``==>``: redact always runs in the same process as parse, in place: the parsed,
unredacted document lives only in that process's memory, never in Redis.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Step:
    """One step of the route: its queue and the step it hands on to."""

    queue: str
    next: str | None = None  # the step it hands on to, by name
    next_in_place: bool = False  # ``next`` runs in this process whatever queues it consumes
    followup: bool = False  # never changes the event's status; hands on whatever its outcome
    runs_when_superseded: bool = False  # a follow-up that checks against the index itself


# The ingestion stages, in route order. A stage hands on only when it succeeds.
STAGES: dict[str, Step] = {
    "parse": Step("parse", next="redact", next_in_place=True),
    "redact": Step("redact", next="chunk"),
    "chunk": Step("chunk", next="diff"),
    "diff": Step("index", next="embed"),
    "embed": Step("embed", next="upsert"),
    "upsert": Step("index"),
    "delete": Step("index"),
}
ENTRY = {"create": "parse", "modify": "parse", "reindex": "parse", "delete": "delete"}  # by event action

# After an upsert that changed what the graph or the summary should hold. Each follow-up hands on
# whatever its outcome, so the last one (graph_apply, in the index owner) releases the event.
FOLLOWUPS: dict[str, Step] = {
    "graph_extract": Step("graph", next="summarise", followup=True),  # spaCy work: a pipeline worker
    "summarise": Step("graph", next="graph_apply", followup=True),
    # applies the graph if the index still holds this version, indexes the summary, releases the event
    "graph_apply": Step("index", followup=True, runs_when_superseded=True),
}
AFTER_UPSERT = "graph_extract"

# Tasks outside the route: questions to the index owner, beat ticks and batch deliveries.
SERVICES = {
    "manifest": "index",
    "texts": "index",
    "graph_relations": "index",
    "summary_index": "index",
    "search": "query",
    "document": "query",
    "ping": "query",
    "graph_query": "query",
    "graph_communities": "query",
    "summary_tick": "summary",
    "sweep": "query",  # the in-flight sweep (runtime/sweep.py): the index owner's quick queue, always up
    "generation": "index",  # list, create, compare, switch, rollback, drop
}

STEPS: dict[str, Step] = {**STAGES, **FOLLOWUPS}
STAGE_QUEUES: dict[str, str] = {**{name: step.queue for name, step in STEPS.items()}, **SERVICES}
PIPELINE_QUEUES = ("parse", "redact", "chunk", "embed", "graph", "summary")
QUERY_QUEUES = ("index", "query")  # the index owner: Edge allows one process per storage directory
# On one machine (`sluice up`) the index owner also embeds and runs the follow-ups: a document then
# crosses the broker twice (parse -> redact -> chunk in a pipeline worker, diff -> ... -> graph_apply
# in the query worker) instead of nine times.
EMBEDDED_QUERY_QUEUES = QUERY_QUEUES + ("embed", "graph")
ALL_QUEUES = PIPELINE_QUEUES + QUERY_QUEUES
assert set(STAGE_QUEUES.values()) == set(ALL_QUEUES), "every queue has a step and a consumer"


def next_step(name: str) -> str | None:
    return STEPS[name].next


def route(start: str, skip: frozenset[str] = frozenset()) -> list[str]:
    """The stages an event runs from ``start`` on, leaving out ``skip`` (recorded per document)."""
    names: list[str] = []
    name: str | None = start
    while name is not None:
        if name not in skip:
            names.append(name)
        name = STAGES[name].next
    return names
