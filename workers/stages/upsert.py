"""Upsert: write the embedded plan to the index (in the index owner) and start the follow-ups."""

from __future__ import annotations

from schemas.events import Event
from workers.runtime.state import State
from workers.runtime.step import step
from workers.stages.indexing import index_document


@step("upsert")
def upsert(state: State, event: Event) -> None:
    index_document(state, event, vectors_needed=True, unchanged=False)
