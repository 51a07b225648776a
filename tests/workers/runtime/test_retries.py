"""Transient failures retry with backoff; when retries run out the event is dead-lettered, not lost."""

from __future__ import annotations

import hashlib

import pytest

from pipelines.errors import TransientError
from schemas.events import Action, Event
from workers.launcher.embedded_redis import EmbeddedRedis


@pytest.fixture
def eager(eager_state, monkeypatch):
    from workers.runtime import dispatch

    handed_on: list[str] = []
    monkeypatch.setitem(dispatch._runners, "redact", handed_on.append)  # parse hands on in place, in memory
    return eager_state, handed_on


def _event(st, tmp_path) -> Event:
    path = tmp_path / "note.txt"
    path.write_text("A note about otters.")
    ev = Event(source=f"folder:{tmp_path}", key="note.txt", action=Action.create,
               version=hashlib.sha256(path.read_bytes()).hexdigest())
    st.reset_event(ev)
    st.admit(ev.event_id)
    return ev


def test_transient_error_is_retried_and_then_succeeds(eager, tmp_path, monkeypatch):
    from workers.sources import reader
    from workers.stages.parse import parse

    st, handed_on = eager
    ev = _event(st, tmp_path)
    real, calls = reader.read, []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) < 3:
            raise TransientError("object store briefly unreachable")
        return real(*args, **kwargs)

    monkeypatch.setattr(reader, "read", flaky)
    parse.apply(args=(ev.event_id,))
    assert len(calls) == 3 and handed_on == [ev.event_id]
    assert st.dead_letters() == []


def test_retries_run_out_into_the_dead_letter_store(eager, tmp_path, monkeypatch):
    from workers.sources import reader
    from workers.stages.parse import parse

    st, handed_on = eager
    ev = _event(st, tmp_path)

    def down(*_args, **_kwargs):
        raise ConnectionError("connection refused")

    monkeypatch.setattr(reader, "read", down)
    parse.apply(args=(ev.event_id,))
    assert handed_on == []
    (letter,) = st.dead_letters()
    assert letter["stage"] == "parse" and letter["error"] == "gave up after 2 retries: connection refused"
    assert st.event_info(ev.event_id)["status"] == "failed" and st.in_flight() == 0


def test_a_late_copy_of_a_finished_event_neither_runs_nor_reopens_it(tmp_path):
    from workers.runtime.state import State

    redis = EmbeddedRedis(tmp_path / "redis", persist=False).start()
    try:
        st = State.from_url(redis.url)
        ev = _event(st, tmp_path)
        assert st.begin_stage("parse", ev.event_id) == ev
        assert st.event_info(ev.event_id)["status"] == "running"
        st.finish(ev.event_id, "done")
        late = State.from_url(redis.url)  # another worker, holding a redelivered copy of the redact message
        assert late.begin_stage("redact", ev.event_id) == "duplicate"
        assert (st.event_info(ev.event_id)["status"], st.event_info(ev.event_id)["stage"]) == ("done", "parse")
        st.reset_event(ev)  # admitted again (a forced re-index): the event runs once more
        assert late.begin_stage("redact", ev.event_id) == ev
        assert st.event_info(ev.event_id)["status"] == "running"
    finally:
        redis.stop()
