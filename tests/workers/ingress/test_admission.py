"""Bounded means bounded: a burst waits at the ingress instead of piling into Redis."""

from __future__ import annotations

import threading
import time

import pytest

from harness import Sluice
from workers.runtime.flow import ALL_QUEUES

BOUND = 8


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    s = Sluice(tmp_path_factory.mktemp("bounded"), max_in_flight=str(BOUND), max_queue_depth=str(BOUND))
    s.start("query", "query-worker", "--name", "query@test")
    s.wait_for_workers({"query@test"})
    yield s
    s.close()


def test_burst_waits_at_the_ingress_and_loses_nothing(small, tmp_path):
    from workers import client
    from workers.runtime.config import settings

    st = client.connect(settings())
    folder = tmp_path / "burst"
    folder.mkdir()
    for i in range(40):
        (folder / f"note-{i:03}.txt").write_text(f"Field note {i}: a wren was seen at feeder {i}.")
    events = client.events_for([folder], settings())
    result: dict = {}
    submitter = threading.Thread(target=lambda: result.update(r=client.ingest(st, settings(), events, wait=True)))
    submitter.start()

    peak = {"in_flight": 0, **{q: 0 for q in ALL_QUEUES}}
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak["in_flight"] = max(peak["in_flight"], st.in_flight())
            for q in ALL_QUEUES:
                peak[q] = max(peak[q], st.queue_depth(q))
            time.sleep(0.005)

    sampler = threading.Thread(target=sample)
    sampler.start()
    time.sleep(3)  # no pipeline worker yet: the pipeline fills to its bound and the submitter waits
    assert submitter.is_alive()
    assert st.in_flight() == BOUND and st.queue_depth("parse") == BOUND

    small.start("pipeline", "worker", "--concurrency", "2", "--name", "pipeline@test")
    submitter.join(300)
    stop.set()
    sampler.join()
    report = result["r"]
    assert report.indexed == 40 and report.failed == []
    assert max(peak.values()) <= BOUND, peak
    deadline = time.monotonic() + 120  # graph and summary follow-ups release the last events
    while st.in_flight() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert st.in_flight() == 0
