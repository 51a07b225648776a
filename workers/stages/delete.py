"""Delete: the document leaves the index, the graph and the summaries."""

from __future__ import annotations

from schemas.events import Event
from workers.followups.steps import after_delete
from workers.runtime import resources
from workers.runtime.state import State
from workers.runtime.step import step


@step("delete")
def delete(state: State, event: Event) -> None:
    index = resources.index()
    removed = index.count({"doc_id": event.doc_id})
    index.delete_document(event.doc_id)
    resources.generations().delete_others(event.doc_id)
    state.record_deleted(event.doc_id, key=event.key, source=event.source, last_event=event.event_id)
    after_delete(state, event)  # the graph and the summary forget the document
    state.add_counter("chunks_deleted", removed)
    state.finish(event.event_id, "deleted", chunks_deleted=removed)
