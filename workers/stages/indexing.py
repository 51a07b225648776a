"""Writing a document's plan to the index and its record to Redis: the end of diff (nothing to embed) and of upsert."""

from __future__ import annotations

import numpy as np

from pipelines.embed import DIMENSIONS
from pipelines.upsert import DocumentMeta, apply_plan, plan_counts
from schemas.documents import ChunkPlan, RedactedDocument
from schemas.events import Event
from workers.followups.steps import after_upsert
from workers.runtime import flow, resources
from workers.runtime.state import State
from workers.stages.chunk import chunks_of


def index_document(state: State, event: Event, vectors_needed: bool, unchanged: bool) -> None:
    chunks = chunks_of(state, event.event_id)
    chunk_plan = ChunkPlan.model_validate_json(state.get_json("plan", event.event_id))
    redacted = RedactedDocument.model_validate_json(state.get_json("redacted", event.event_id))
    vectors = state.get_vectors(event.event_id, DIMENSIONS) if vectors_needed else np.zeros((0, DIMENSIONS))
    meta = DocumentMeta.of(event, redacted, resources.embedder().space)
    if not unchanged:
        apply_plan(resources.index(), chunks, chunk_plan, vectors, resources.bm25(), meta)
    counts = plan_counts(chunks, chunk_plan)
    stages = flow.route("parse", skip=frozenset() if chunk_plan.embed else frozenset({"embed"}))
    state.record_indexed(event.doc_id, event.version, **meta.record(), last_event=event.event_id, stages=stages, **counts)
    followups = after_upsert(state, event, redacted.entities)  # keeps chunks and entities for them
    for name in ("chunks_embedded", "chunks_reused", "chunks_deleted"):
        state.add_counter(name, counts[name])
    state.finish(event.event_id, "unchanged" if unchanged else "done", release=not followups, **counts)
    state.drop_artifacts(event.event_id)
