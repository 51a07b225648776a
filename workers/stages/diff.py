"""Diff: compare the chunks with what the index holds; only new chunks go on to embed."""

from __future__ import annotations

from pipelines import diff as diffing
from schemas.events import Event
from workers.runtime import dispatch, resources
from workers.runtime.state import State
from workers.runtime.step import step
from workers.stages.chunk import chunks_of
from workers.stages.indexing import index_document


@step("diff")
def diff(state: State, event: Event) -> None:
    chunks = chunks_of(state, event.event_id)
    indexed = resources.index().chunk_hashes(event.doc_id)
    chunk_plan = diffing.plan(chunks, indexed, force=event.force, space=resources.embedder().space)
    state.put_json("plan", event.event_id, chunk_plan.model_dump_json())
    if chunk_plan.embed:
        dispatch.hand_on_next("diff", event.event_id)
        return
    index_document(state, event, vectors_needed=False, unchanged=diffing.unchanged(chunk_plan, indexed, event.version))
