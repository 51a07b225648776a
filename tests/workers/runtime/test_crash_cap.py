"""A step whose worker dies in it (killed for its memory, a crash) is delivered again by late acks and
reject-on-worker-lost; after ``max_deliveries`` such deaths it is dead-lettered, not run again."""

from __future__ import annotations

import hashlib
import os

from schemas.events import Action, Event


def _admitted(st, tmp_path) -> Event:
    ev = Event(source=f"folder:{tmp_path}", key="poison.docx", action=Action.create,
               version=hashlib.sha256(b"poison").hexdigest())
    st.reset_event(ev)
    st.admit(ev.event_id)
    return ev


def _after_deaths(st, tmp_path, monkeypatch, deaths: int) -> tuple[Event, list[str]]:
    """An admitted event whose parse killed its worker ``deaths`` times; the bodies run from now on."""
    from workers.runtime import step

    ev = _admitted(st, tmp_path)
    for _ in range(deaths):
        _dies_in_parse(ev.event_id)
    ran: list[str] = []
    monkeypatch.setitem(step.BODIES, "parse", lambda st, event: ran.append(event.event_id))
    return ev, ran


def _dies_in_parse(event_id: str) -> None:
    """Deliver sluice.parse in a forked worker that the kernel kills inside the step (no finally runs)."""
    from workers.runtime import step
    from workers.stages import parse

    pid = os.fork()
    if pid == 0:
        step.BODIES["parse"] = lambda st, event: os._exit(137)
        parse.parse.apply(args=(event_id,))
        os._exit(0)  # not reached
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 137


def test_a_step_that_killed_its_worker_three_times_is_dead_lettered_not_run_a_fourth_time(
    eager_state, tmp_path, monkeypatch
):
    from workers.stages import parse

    st = eager_state
    ev, ran = _after_deaths(st, tmp_path, monkeypatch, 3)

    assert parse.parse.apply(args=(ev.event_id,)).get() == "failed"

    assert ran == []
    (letter,) = st.dead_letters()
    assert (letter["stage"], letter["error"]) == ("parse", "crashed the worker 3 times; not run again")
    assert st.event_info(ev.event_id)["status"] == "failed"
    assert st.in_flight() == 0
    assert not list(st.r.scan_iter("sluice:started:*"))  # a retry from the dead-letter store starts afresh


def test_deaths_fewer_than_the_cap_and_finished_steps_count_nothing(eager_state, tmp_path, monkeypatch):
    from workers.stages import parse

    st = eager_state
    ev, ran = _after_deaths(st, tmp_path, monkeypatch, 2)

    assert parse.parse.apply(args=(ev.event_id,)).get() == "ok"

    assert ran == [ev.event_id] and st.dead_letters() == []
    assert not list(st.r.scan_iter("sluice:started:*"))
