"""The artifact an upsert keeps for its follow-ups: the chunk list and the named entities redact found."""

from __future__ import annotations

import json

from schemas.documents import Chunk
from workers.runtime.state import State

FOLLOWUP = "followup"  # artifact kind; dropped when the last follow-up releases the event


def followup_kept(state: State, event_id: str) -> tuple[list[Chunk], list[tuple[str, str]]]:
    """The chunks and named entities ``after_upsert`` kept, read in one go."""
    kept = json.loads(state.get_json(FOLLOWUP, event_id))
    return [Chunk.model_validate(c) for c in kept["chunks"]], [(s, label) for s, label in kept["entities"]]


def followup_chunks(state: State, event_id: str) -> list[Chunk]:
    return followup_kept(state, event_id)[0]
