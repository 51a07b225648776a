"""The one step runtime (workers/runtime/step.py): an error in a follow-up that runs in place ends as
that follow-up's retry and dead letter; it never climbs into the step before it."""

from __future__ import annotations

import hashlib
import json

from pipelines.errors import TransientError
from schemas.documents import Chunk
from schemas.events import Action, Event
from schemas.graph import DocContribution

TEXT = "Otters live in rivers. Otters eat fish and crabs. Rivers in Scotland hold many otters."


class DownIndex:
    """An index that cannot be reached: every look-up is a transient error."""

    def __init__(self) -> None:
        self.calls = 0

    def chunk_hashes(self, doc_id: str) -> dict[str, dict[str, str]]:
        self.calls += 1
        raise TransientError("index unreachable")


def _upserted(st, tmp_path) -> Event:
    """An event whose upsert finished and whose follow-ups are pending, as upsert leaves them."""
    ev = Event(source=f"folder:{tmp_path}", key="otters.txt", action=Action.create,
               version=hashlib.sha256(TEXT.encode()).hexdigest())
    st.reset_event(ev)
    st.admit(ev.event_id)
    st.record_indexed(ev.doc_id, ev.version, key=ev.key, source=ev.source, last_event=ev.event_id)
    st.finish(ev.event_id, "done", release=False)
    chunk = Chunk(doc_id=ev.doc_id, position=0, text=TEXT, hash=hashlib.sha256(TEXT.encode()).hexdigest())
    st.put_json("followup", ev.event_id, json.dumps({"chunks": [chunk.model_dump()], "entities": []}))
    st.put_json("graphcontrib", ev.event_id, DocContribution(doc_id=ev.doc_id, version=ev.version).model_dump_json())
    return ev


def test_an_index_failure_in_graph_apply_is_retried_then_dead_lettered_not_climbing_into_summarise(
    eager_state, tmp_path, monkeypatch
):
    from workers.followups import steps, summaries
    from workers.runtime import dispatch, resources

    st = eager_state
    ev = _upserted(st, tmp_path)
    down = DownIndex()
    monkeypatch.setattr(resources, "index", lambda: down)
    monkeypatch.setenv(dispatch.QUEUES_ENV, "graph,index")  # graph_apply runs in place after summarise

    result = steps.summarise.apply(args=(ev.event_id,))

    assert result.successful() and result.get() == "ok"  # summarise itself finished well
    assert down.calls == 3  # graph_apply in place, then its two retries
    (letter,) = st.dead_letters()
    assert (letter["stage"], letter["error"]) == ("graph_apply", "gave up after 2 retries: index unreachable")
    assert st.indexed_version(ev.doc_id) == ev.version  # the document stays indexed
    info = st.event_info(ev.event_id)
    assert info["status"] == "done" and "error" not in info
    assert st.document(ev.doc_id)["graph_apply_error"] == letter["error"]
    assert summaries.stored_summary(st, ev.doc_id) is not None  # what summarise did is kept
    assert st.in_flight() == 0  # released once the last follow-up ended
    assert not list(st.r.scan_iter("sluice:art:*"))  # and its kept artifacts are gone


def test_a_follow_up_whose_event_expired_still_hands_on_and_releases(eager_state, monkeypatch):
    from workers.followups import steps
    from workers.runtime import dispatch

    st = eager_state
    st.admit("gone")
    ran: list[str] = []
    monkeypatch.setitem(dispatch._runners, "summarise", ran.append)
    monkeypatch.setenv(dispatch.QUEUES_ENV, "graph")
    assert steps.graph_extract.apply(args=("gone",)).get() == "expired"
    assert ran == ["gone"]  # the next follow-up runs, so the last one releases the event
    assert steps.graph_apply.apply(args=("gone",)).get() == "expired"
    assert st.in_flight() == 0
