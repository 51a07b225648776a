"""The in-flight sweep: an event whose message was lost is sent on from its first unfinished stage,
a finished one whose follow-ups went missing is released or followed up, a lost record is dead-lettered."""

from __future__ import annotations

import pytest

from schemas.events import Action, Event


@pytest.fixture
def swept(eager_state, monkeypatch):
    """The State, what the sweep published (stage, event id, kwargs), and the sweep with every event stale."""
    from workers.runtime import config, dispatch, sweep

    sent: list[tuple[str, str, dict]] = []
    monkeypatch.setattr(dispatch, "publish", lambda name, args=(), **o: sent.append((name, args[0], o["kwargs"])))
    monkeypatch.setenv("SLUICE_STALE_AFTER_S", "0")
    config.settings.cache_clear()
    return eager_state, sent, lambda: sweep.sweep(eager_state, config.settings())


def _admitted(st, key: str = "note.txt", action: Action = Action.create) -> Event:
    ev = Event(source="folder:/nowhere", key=key, action=action, version="v1" if action != Action.delete else "")
    st.reset_event(ev)
    st.admit(ev.event_id)
    return ev


def test_an_event_whose_message_was_lost_is_sent_again_from_its_first_unfinished_stage(swept):
    st, sent, sweep = swept
    fresh, half = _admitted(st, "fresh.txt"), _admitted(st, "half.txt")
    for stage in ("parse", "redact", "chunk"):
        st.mark_stage_done(stage, half.event_id)
    assert sweep() == {"resent": 2}
    assert sorted(sent) == sorted([("parse", fresh.event_id, {"limit_s": 120}), ("diff", half.event_id, {})])
    assert st.in_flight() == 2  # still in flight: the stages finish them


def test_a_swept_event_is_not_sent_again_before_it_is_stale_again(swept, monkeypatch):
    from workers.runtime import config, sweep as sweeping

    st, sent, sweep = swept
    ev = _admitted(st)
    sweep()
    monkeypatch.setenv("SLUICE_STALE_AFTER_S", "60")
    config.settings.cache_clear()
    assert sweeping.sweep(st, config.settings()) == {} and sent == [("parse", ev.event_id, {"limit_s": 120})]


def test_a_stage_that_began_lately_keeps_its_event_off_the_sweep(swept, monkeypatch):
    from workers.runtime import config, sweep as sweeping

    st, sent, _ = swept
    ev = _admitted(st)
    st.r.zadd("sluice:inflight", {ev.event_id: 1.0})  # admitted long ago ...
    assert isinstance(st.begin_stage("parse", ev.event_id), Event)  # ... but parse began just now
    monkeypatch.setenv("SLUICE_STALE_AFTER_S", "60")
    config.settings.cache_clear()
    assert sweeping.sweep(st, config.settings()) == {} and sent == []


def test_finished_events_held_by_lost_followups_are_followed_up_or_released(swept):
    st, sent, sweep = swept
    kept, bare = _admitted(st, "kept.txt"), _admitted(st, "bare.txt")
    for ev in (kept, bare):
        st.finish(ev.event_id, "done", release=False)
    st.put_json("followup", kept.event_id, "{}")
    assert sweep() == {"followups": 1, "released": 1}
    assert sent == [("graph_extract", kept.event_id, {})]
    assert st.in_flight() == 1  # the follow-ups release the kept one


def test_an_event_whose_record_is_gone_is_dead_lettered_with_a_reason(swept):
    st, sent, sweep = swept
    ev = _admitted(st)
    st.r.delete(f"sluice:event:{ev.event_id}")
    assert sweep() == {"lost": 1}
    assert st.in_flight() == 0 and sent == []
    (letter,) = st.dead_letters()
    assert letter["event_id"] == ev.event_id and "lost from Redis" in letter["error"]


def _message(event_id: str, task: str) -> dict:
    """A task message as kombu keeps it in a queue."""
    import base64
    import json

    return {"body": base64.b64encode(json.dumps([[event_id], {}, {}]).encode()).decode(), "headers": {"task": task}}


def test_an_event_a_message_still_carries_is_left_alone(swept):
    """Queued behind others, running, or held by a dead worker until the visibility timeout: not lost."""
    import json

    st, sent, sweep = swept
    queued, delivered, lost = _admitted(st, "queued.txt"), _admitted(st, "delivered.txt"), _admitted(st, "lost.txt")
    st.r.lpush("parse", json.dumps(_message(queued.event_id, "sluice.parse")))
    st.r.hset("unacked", "tag", json.dumps([_message(delivered.event_id, "sluice.parse"), "", "parse"]))
    assert sweep() == {"resent": 1} and [e for _, e, _ in sent] == [lost.event_id]


def test_a_finished_event_held_only_by_a_stage_s_late_copy_is_followed_up(swept):
    """The worker that finished it died before acking (its follow-ups ran in place, cut short): that copy
    will be a duplicate when it comes back; only a follow-up's message keeps the event waiting."""
    import json

    st, sent, sweep = swept
    cut, waiting = _admitted(st, "cut.txt"), _admitted(st, "waiting.txt")
    for ev in (cut, waiting):
        st.finish(ev.event_id, "done", release=False)
        st.put_json("followup", ev.event_id, "{}")
    st.r.hset("unacked", "t1", json.dumps([_message(cut.event_id, "sluice.diff"), "", "index"]))
    st.r.lpush("graph", json.dumps(_message(waiting.event_id, "sluice.graph_extract")))
    assert sweep() == {"followups": 1} and sent == [("graph_extract", cut.event_id, {})]
