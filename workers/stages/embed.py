"""Embed: vectors for the chunks the diff found new (the expensive stage; unchanged content never reaches it)."""

from __future__ import annotations

from schemas.documents import ChunkPlan
from schemas.events import Event
from workers.runtime import dispatch, resources
from workers.runtime.state import State
from workers.runtime.step import step
from workers.runtime.telemetry import in_steps
from workers.stages.chunk import chunks_of


@step("embed")
def embed(state: State, event: Event) -> None:
    chunks = {c.position: c for c in chunks_of(state, event.event_id)}
    chunk_plan = ChunkPlan.model_validate_json(state.get_json("plan", event.event_id))
    embedder = resources.embedder()
    vectors = in_steps(embedder.embed, [chunks[p].text for p in chunk_plan.embed])
    state.put_vectors(event.event_id, vectors, embedder.space)
    dispatch.hand_on_next("embed", event.event_id)
