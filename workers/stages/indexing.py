"""Writing a document's plan to the index and its record to Redis: the end of diff (nothing to embed) and of upsert."""

from __future__ import annotations

import numpy as np

from pipelines.embed import DIMENSIONS
from pipelines.upsert import DocumentMeta, apply_plan, index_version, plan_counts
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
    vectors, space = state.get_vectors(event.event_id, DIMENSIONS) if vectors_needed else (
        np.zeros((0, DIMENSIONS)), chunk_plan.space)
    embedder, generations = resources.embedder(), resources.generations()
    meta = DocumentMeta.of(event, redacted, embedder.space)
    if {space, chunk_plan.space} != {embedder.space}:  # planned or embedded for a generation switched away from
        index_version(resources.index(), chunks, meta, embedder.embed, resources.bm25(), event.force)
    elif not unchanged:
        apply_plan(resources.index(), chunks, chunk_plan, vectors, resources.bm25(), meta)
    generations.write_others(chunks, meta, event.force)  # every kept generation holds every version
    counts = plan_counts(chunks, chunk_plan)
    stages = flow.route("parse", skip=frozenset() if chunk_plan.embed else frozenset({"embed"}))
    state.record_indexed(event.doc_id, event.version, **meta.record(), last_event=event.event_id, stages=stages, **counts)
    followups = after_upsert(state, event, redacted.entities)  # keeps chunks and entities for them
    for name in ("chunks_embedded", "chunks_reused", "chunks_deleted"):
        state.add_counter(name, counts[name])
    state.finish(event.event_id, "unchanged" if unchanged else "done", release=not followups, **counts)
    state.drop_artifacts(event.event_id)
