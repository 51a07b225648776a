"""Typed relations: asked for after entity extraction, answered through the summary batches.

Flow: ``graph_extract`` (pipeline worker) hands its contribution to ``request``, which queues one
relation request per chunk with two or more entities in the Batch API record store (when a model
is configured). The summary tick submits and collects them with the summaries; each validated
answer reaches ``deliver``, which parks it in Redis and sends the index owner
(``graph_relations``, ``index`` queue) a token, never content. The index owner attaches it to the
document's contribution if that version is still the one in the graph; an answer for content that
has changed since is discarded, one that overtook its own contribution waits for it briefly."""

from __future__ import annotations

import hashlib
import logging
import time
from functools import cache
from typing import Any

from pipelines.batches import BatchSummariser
from pipelines.relations import PROMPT_VERSION, plan
from pipelines.summarise import Prompt
from schemas.documents import Chunk
from schemas.graph import ChunkRelations, DocContribution
from workers.followups.graphs import graphs
from workers.followups.summaries import batch_enabled
from workers.runtime import resources
from workers.runtime.app import app
from workers.runtime.config import settings
from workers.runtime.state import State, keys

log = logging.getLogger("sluice.relations")
WAIT_RETRIES = 10  # a relation answer may overtake graph_apply by this many short waits


@cache
def _prompt() -> Prompt:
    return Prompt.load(PROMPT_VERSION)


def enabled() -> bool:
    return settings().graph_relations and batch_enabled()


def request(summariser: BatchSummariser, contribution: DocContribution, chunks: list[Chunk]) -> int:
    """Queue the relation requests of one document version; the number queued."""
    if not enabled():
        return 0
    texts = {c.hash: c.text for c in chunks}  # redacted: chunks are cut from the redacted document
    return summariser.enqueue(plan(contribution, texts, _prompt(), summariser.count, time.time()))


def _key(token: str) -> str:
    return keys.relations(token)


def deliver(state: State, found: ChunkRelations) -> bool:
    """Batch side: park validated relations and tell the query worker (the message holds a token only)."""
    token = hashlib.sha256(f"{found.doc_id}:{found.version}:{found.chunk_hash}".encode()).hexdigest()[:32]
    state.r.set(_key(token), found.model_dump_json(), ex=settings().artifact_ttl_s)
    graph_relations.delay(token)
    return True


@app.task(name="sluice.graph_relations", bind=True, max_retries=WAIT_RETRIES)
def graph_relations(self: Any, token: str) -> str:
    """Query worker: attach one chunk's relations to the graph, if its document version is still there."""
    state = resources.state()
    raw = state.r.get(_key(token))
    if raw is None:
        return "expired"
    found = ChunkRelations.model_validate_json(raw)
    outcome = graphs().attach(found)
    if outcome == "waiting":
        if state.indexed_version(found.doc_id) == found.version and self.request.retries < WAIT_RETRIES:
            raise self.retry(countdown=1.0 + self.request.retries)  # its contribution is on its way
        outcome = "stale"  # changed or deleted since: the newer version asks for its own relations
    state.r.delete(_key(token))
    log.info("relations for a chunk: %s", outcome)
    return outcome
