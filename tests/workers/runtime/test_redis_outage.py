"""Redis killed and restarted three times during an ingest: every document ends indexed or
dead-lettered with a reason, nothing stays in flight, and `sluice ingest --wait` still reports.

Each outage outlasts ``publish_retry_s``, so some hand-ons and retries fail outright: their stages
are redone from the in-flight sweep (beat, every ``sweep_interval_s``) or from their unacked message.
A worker whose Celery consumer gives up after an outage (kombu can fail to close a dead connection)
is started again, as ``sluice up`` does.
"""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from harness import SLUICE, Sluice
from workers.client import through_outages

DOCS = 30
OUTAGE_S = 4.0  # longer than publish_retry_s: some publishes give up


@pytest.fixture(scope="module")
def sluice(tmp_path_factory):
    s = Sluice(tmp_path_factory.mktemp("outage"), persist=True, restart=True, publish_retry_s="2", stale_after_s="30",
               sweep_interval_s="3", task_time_limit_s="60", retry_backoff_s="0.5")
    try:
        s.start_workers()
        s.start("beat", "beat")
        yield s
    finally:
        s.close()


def _count(st, name: str) -> int:
    return int(through_outages(lambda: st.r.get(f"sluice:count:{name}")) or 0)


def test_redis_killed_three_times_mid_ingest_loses_no_document(sluice, tmp_path):
    from workers import client
    from workers.runtime.config import settings

    folder = tmp_path / "docs"
    folder.mkdir()
    for i in range(DOCS):
        (folder / f"doc{i:02}.txt").write_text(
            f"Report {i} on the lighthouse keepers of island {i}.\n\n" + f"The lamp number {i} was cleaned daily. " * 30)
    st = client.connect(settings())
    ingest = subprocess.Popen([*SLUICE, "ingest", str(folder), "--wait", "--json"], env=sluice.env, cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    outages = []
    for after in (1, 10, 20):  # documents finished before each kill
        deadline = time.monotonic() + 90
        while _count(st, "done") + _count(st, "failed") < after:
            assert time.monotonic() < deadline and ingest.poll() is None, (
                f"stuck before {after} documents: {sluice.log('pipeline')[-2000:]}")
            time.sleep(0.1)
        sluice.kill_redis()
        time.sleep(OUTAGE_S)
        sluice.start_redis()
        outages.append(after)
    out, err = ingest.communicate(timeout=150)
    assert ingest.returncode == 0 and "Traceback" not in err, err[-3000:]
    report = json.loads(out)

    # Every document indexed or dead-lettered with a reason; the index agrees with the report.
    assert report["indexed"] + report["unchanged"] + len(report["failed"]) == DOCS, report  # redone: unchanged
    letters = {d["key"]: d for d in st.dead_letters()}
    for failed in report["failed"]:
        assert failed["error"] and failed["path"] in letters, (failed, letters)
    indexed = client.manifest(None)
    assert len(indexed) == report["indexed"] + report["unchanged"], (len(indexed), report)
    assert client.ask("ping")["chunks"] == sum(d["chunks"] for d in indexed.values())  # no duplicate points

    # Nothing left in flight once the follow-ups are over (or swept: a worker that crashed before acking
    # leaves a copy that comes back after the visibility timeout, 70 s here).
    deadline = time.monotonic() + 120
    while st.in_flight():
        assert time.monotonic() < deadline, f"left in flight: {st.r.zrange('sluice:inflight', 0, -1, withscores=True)}"
        time.sleep(0.5)
    print(sorted({(f["stage"], f["error"][:120]) for f in report["failed"]}))
    print(f"{DOCS} documents, Redis killed after {outages} finished: {report['indexed']} indexed, "
          f"{len(report['failed'])} dead-lettered in {report['elapsed_s']:.0f}s; sweeps: {sluice.log('query').count('in-flight sweep')}")
