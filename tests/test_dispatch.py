"""Handing on in place or through the broker (workers/dispatch.py), without a broker."""

from workers import dispatch


class Published:
    """Stands in for a Celery task: records what would have been published."""

    def __init__(self, name: str) -> None:
        self.name, self.sent = f"sluice.{name}", []

    def delay(self, event_id: str) -> None:
        self.sent.append(event_id)


def test_a_stage_whose_queue_this_worker_consumes_runs_after_the_current_one(monkeypatch):
    ran = []
    monkeypatch.setitem(dispatch._runners, "redact", ran.append)
    monkeypatch.setenv(dispatch.QUEUES_ENV, "parse,redact,chunk")
    redact = Published("redact")
    with dispatch.collecting() as chain:
        dispatch.hand_on(redact, "e1")
        assert ran == []  # not before the current stage is over
    dispatch.run(chain)
    assert (ran, redact.sent) == (["e1"], [])


def test_a_stage_for_another_workers_queue_is_published(monkeypatch):
    monkeypatch.setitem(dispatch._runners, "upsert", lambda event_id: None)
    monkeypatch.setenv(dispatch.QUEUES_ENV, "parse,redact,chunk,embed")
    upsert = Published("upsert")  # the "index" queue belongs to the query worker
    with dispatch.collecting() as chain:
        dispatch.hand_on(upsert, "e2")
    assert (chain, upsert.sent) == ([], ["e2"])


def test_outside_a_stage_or_in_a_client_everything_is_published(monkeypatch):
    monkeypatch.setitem(dispatch._runners, "redact", lambda event_id: None)
    monkeypatch.setenv(dispatch.QUEUES_ENV, "redact")
    redact = Published("redact")
    dispatch.hand_on(redact, "e3")  # no stage running: nothing would ever run it
    monkeypatch.delenv(dispatch.QUEUES_ENV)
    with dispatch.collecting() as chain:
        dispatch.hand_on(redact, "e4")  # not a worker (a test, the CLI): the broker takes it
    assert (chain, redact.sent) == ([], ["e3", "e4"])


def test_every_pipeline_stage_can_run_in_place():
    import workers.summary_tasks
    import workers.tasks  # registers the stages

    assert workers.tasks.parse and workers.summary_tasks.summarise

    assert {"parse", "redact", "chunk", "diff", "embed", "upsert", "graph_extract", "summarise",
            "graph_apply"} <= set(dispatch._runners)
