"""Parse: read the event's bytes and parse them; the parsed, unredacted document stays in memory."""

from __future__ import annotations

from pipelines.errors import MIB
from schemas.documents import ParsedDocument
from schemas.events import Event, content_version
from workers.runtime import dispatch
from workers.runtime.config import settings
from workers.runtime.state import State
from workers.runtime.step import step
from workers.sources import reader


def parsed(st: State, event: Event) -> ParsedDocument | None:
    """The event's file, read and parsed; None when it changed or vanished since (a newer event follows)."""
    from pipelines.parse import parse_isolated  # unstructured: loaded by the workers that parse, only

    s = settings()
    data = reader.read(event.source, event.key, s.max_document_bytes)
    if data is None or content_version([data]) != event.version:
        st.finish(event.event_id, "superseded")
        return None
    return parse_isolated(data, event.key, max_bytes=s.max_document_bytes, memory_bytes=s.parse_memory_mib * MIB,
                          time_s=s.parse_time_limit_s)


@step("parse")
def parse(st: State, event: Event) -> None:
    doc = parsed(st, event)
    if doc is None:
        return
    st.keep("parsed", event.event_id, doc)  # in this thread's memory only: raw text is never stored
    dispatch.hand_on_next("parse", event.event_id)
