"""Chunk: cut the redacted document to the embedder's window; the chunk list is the artifact the next stages read."""

from __future__ import annotations

import json

from pipelines.errors import PermanentError
from schemas.documents import Chunk, RedactedDocument
from schemas.events import Event
from workers.runtime import dispatch, resources
from workers.runtime.state import State
from workers.runtime.step import step


@step("chunk")
def chunk(state: State, event: Event) -> None:
    doc = RedactedDocument.model_validate_json(state.get_json("redacted", event.event_id))
    chunks = resources.chunker().chunk(event.doc_id, doc)
    if not chunks:
        raise PermanentError("no text left to index after parsing")
    state.put_json("chunks", event.event_id, json.dumps([c.model_dump() for c in chunks]))
    dispatch.hand_on_next("chunk", event.event_id)


def chunks_of(state: State, event_id: str) -> list[Chunk]:
    return [Chunk.model_validate(c) for c in json.loads(state.get_json("chunks", event_id))]
