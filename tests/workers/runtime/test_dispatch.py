"""Handing on in place or through the broker (workers/runtime/dispatch.py), without a broker."""

import pytest

from workers.runtime import dispatch, flow


@pytest.fixture
def published(monkeypatch):
    """Stands in for the broker: records what would have been published, by step name."""
    sent: list[tuple[str, str]] = []
    monkeypatch.setattr(dispatch, "publish", lambda name, args, **_: sent.append((name, *args)))
    return sent


def test_a_stage_whose_queue_this_worker_consumes_runs_after_the_current_one(monkeypatch, published):
    ran = []
    monkeypatch.setitem(dispatch._runners, "redact", ran.append)
    monkeypatch.setenv(dispatch.QUEUES_ENV, "parse,redact,chunk")
    with dispatch.collecting() as chain:
        dispatch.hand_on("redact", "e1")
        assert ran == []  # not before the current stage is over
    dispatch.run(chain)
    assert (ran, published) == (["e1"], [])


def test_a_stage_for_another_workers_queue_is_published(monkeypatch, published):
    monkeypatch.setitem(dispatch._runners, "upsert", lambda event_id: None)
    monkeypatch.setenv(dispatch.QUEUES_ENV, "parse,redact,chunk,embed")
    with dispatch.collecting() as chain:
        dispatch.hand_on("upsert", "e2")  # the "index" queue belongs to the query worker
    assert (chain, published) == ([], [("upsert", "e2")])


def test_outside_a_stage_or_in_a_client_everything_is_published(monkeypatch, published):
    monkeypatch.setitem(dispatch._runners, "redact", lambda event_id: None)
    monkeypatch.setenv(dispatch.QUEUES_ENV, "redact")
    dispatch.hand_on("redact", "e3")  # no stage running: nothing would ever run it
    monkeypatch.delenv(dispatch.QUEUES_ENV)
    with dispatch.collecting() as chain:
        dispatch.hand_on("redact", "e4")  # not a worker (a test, the CLI): the broker takes it
    assert (chain, published) == ([], [("redact", "e3"), ("redact", "e4")])


def test_parse_hands_on_to_redact_in_place_whatever_the_worker_consumes(monkeypatch, published):
    monkeypatch.setitem(dispatch._runners, "redact", lambda event_id: None)
    monkeypatch.setenv(dispatch.QUEUES_ENV, "parse")  # not "redact": the parsed text stays in memory anyway
    with dispatch.collecting() as chain:
        dispatch.hand_on_next("parse", "e5")
    assert (chain, published) == ([("redact", "e5")], [])


def test_every_step_of_the_flow_is_a_task_and_can_run_in_place():
    from workers.runtime.app import app

    app.loader.import_default_modules()  # registers the steps, as a worker does at start

    assert set(flow.STEPS) <= set(dispatch._runners)
    assert {f"sluice.{name}" for name in flow.STAGE_QUEUES} <= set(app.tasks)


def test_the_flow_names_every_stage_once_and_every_queue_has_a_step():
    assert flow.route("parse") == ["parse", "redact", "chunk", "diff", "embed", "upsert"]
    assert flow.route("parse", skip=frozenset({"embed"})) == ["parse", "redact", "chunk", "diff", "upsert"]
    assert set(flow.STAGE_QUEUES.values()) == set(flow.ALL_QUEUES)
    assert {flow.ENTRY[a] for a in ("create", "modify", "reindex", "delete")} == {"parse", "delete"}
