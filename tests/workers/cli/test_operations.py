"""Operating a running sluice: Flower (its API and a real headless browser), Prometheus
``/metrics``, progress of long documents, and the dead-letter commands.

One private sluice (own Redis, real Celery workers) and one Flower started the way an
operator starts it (``celery flower --conf=flower.conf``, basic auth from
``FLOWER_BASIC_AUTH``) serve every test here. One ingest feeds them all: a small document,
a long one (it reports progress) and an empty file (dead-lettered at parse).
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from harness import ROOT, SLUICE, Sluice

AUTH = ("operator", "correct-horse-battery")
CORE_STAGES = ("parse", "redact", "chunk", "diff", "embed", "upsert")
FOLLOW_UPS = ("graph_extract", "graph_apply", "summarise")  # when a worker consumes the "graph" queue
EVENT_FIELDS = {"type", "uuid", "hostname", "timestamp", "local_received", "clock", "pid", "utcoffset"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cli(sluice: Sluice, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SLUICE, *args], env=sluice.env, cwd=sluice.root, capture_output=True, text=True,
                          timeout=300, check=False)


class Progress:
    """Listens to the workers' events, keeping every ``task-progress`` one."""

    def __init__(self) -> None:
        from workers.runtime.app import app

        self.app, self.seen, self.live = app, [], threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        assert self.live.wait(30), "no worker events (heartbeats) within 30 s"

    def _on(self, event: dict) -> None:
        self.live.set()
        if event["type"] == "task-progress":
            self.seen.append(event)

    def _run(self) -> None:
        with self.app.connection_for_read() as conn:
            self.receiver = self.app.events.Receiver(conn, handlers={"*": self._on})
            self.receiver.capture(limit=None, timeout=None, wakeup=True)

    def stop(self) -> list[dict]:
        self.receiver.should_stop = True
        self.thread.join(15)  # stops at the next event; workers send a heartbeat every 2 s
        return self.seen


@pytest.fixture(scope="module")
def ops(tmp_path_factory):
    s = Sluice(tmp_path_factory.mktemp("ops"))
    port = free_port()
    log = (s.root / "flower.log").open("ab")
    s.procs["flower"] = subprocess.Popen(
        [sys.executable, "-m", "celery", "-b", s.redis.url, "flower", f"--port={port}", "--address=127.0.0.1",
         f"--conf={ROOT / 'flower.conf'}", f"--db={s.root / 'flower.db'}"],
        env={**s.env, "FLOWER_BASIC_AUTH": ":".join(AUTH)}, cwd=s.root, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    s.flower = f"http://127.0.0.1:{port}"
    try:
        s.start_workers()
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{s.flower}/healthcheck", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, s.log("flower")[-3000:]
            time.sleep(0.3)
        yield s
    finally:
        s.close()


@pytest.fixture(scope="module")
def api(ops):
    from fastapi.testclient import TestClient

    from workers.http.api import create_app

    return TestClient(create_app())


def scrape(api) -> dict[tuple[str, tuple], float]:
    """Every sample of one ``/metrics`` scrape, keyed by (name, sorted labels)."""
    from prometheus_client.parser import text_string_to_metric_families

    r = api.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(r.text) for s in fam.samples}


@pytest.fixture(scope="module")
def ingested(ops, api):
    from workers import client
    from workers.runtime.config import settings

    docs = ops.root / "docs"
    docs.mkdir()
    (docs / "kingfisher.md").write_text(
        "# Kingfishers\n\nThe kingfisher dives for fish in the clear river.\n\n## Habitat\n\nRivers and lakes.")
    (docs / "survey.txt").write_text("\n\n".join(
        f"Survey note {i}: {n} sand martins nested in bank {i} of the quarry." for i, n in enumerate(range(150))))
    (docs / "broken.txt").write_bytes(b"")  # dead-lettered at parse: "file is empty"
    before = scrape(api)
    listener = Progress()
    st = client.connect(settings())
    report = client.ingest(st, settings(), client.events_for([docs], settings()), wait=True)
    assert report.indexed == 2 and [f["path"] for f in report.failed] == ["broken.txt"], report
    return {"docs": docs, "report": report, "before": before, "progress": listener.stop()}


def _flower_tasks(ops, stages: tuple[str, ...], timeout_s: float = 60) -> dict[str, dict]:
    """Flower's task list once it holds a finished task of every stage (events arrive asynchronously)."""
    deadline = time.monotonic() + timeout_s
    while True:
        tasks = httpx.get(f"{ops.flower}/api/tasks", auth=AUTH, timeout=10).json()
        done = {t["name"].removeprefix("sluice.") for t in tasks.values() if t["state"] == "SUCCESS"}
        if set(stages) <= done or time.monotonic() > deadline:
            return tasks
        time.sleep(0.5)


def test_flower_api_with_basic_auth_lists_workers_and_a_finished_task_of_each_stage_class(ops, ingested):
    assert httpx.get(f"{ops.flower}/api/workers", timeout=10).status_code == 401
    assert httpx.get(f"{ops.flower}/api/workers", auth=(AUTH[0], "wrong"), timeout=10).status_code == 401
    assert httpx.get(f"{ops.flower}/", timeout=10).status_code == 401  # the dashboard too

    workers = httpx.get(f"{ops.flower}/api/workers", params={"refresh": 1}, auth=AUTH, timeout=30).json()
    assert {"pipeline@test", "query@test"} <= set(workers)
    # One machine: each document is one task per stage class; the later stages run in place
    # (workers/runtime/dispatch.py) and are timed on their own in /metrics (test_metrics_... below).
    entry = {"parse": "pipeline@test", "diff": "query@test"}
    tasks = _flower_tasks(ops, tuple(entry))
    finished = {t["name"].removeprefix("sluice."): t for t in tasks.values() if t["state"] == "SUCCESS"}
    assert {name: finished[name]["worker"] for name in entry if name in finished} == entry, sorted(finished)
    for t in tasks.values():  # arguments are event ids only: no document text reaches Flower
        if t["name"].removeprefix("sluice.") in CORE_STAGES + FOLLOW_UPS:
            assert re.fullmatch(r"\('[0-9a-f]{32}',\)", t["args"]), t
            assert t["kwargs"] in ("{}", "{'limit_s': 120}"), t  # parse carries its time limit


def test_answers_reach_the_caller_but_not_the_worker_log_or_flower(ops, api, ingested):
    """A search and a document read return indexed text; Flower and the log see neither question nor text."""
    hits = api.get("/search", params={"q": "where does the kingfisher hunt"}).json()["hits"]
    assert any("dives for fish" in h["text"] for h in hits), hits
    chunks = api.get(f"/documents/{hits[0]['doc_id']}").json()
    assert "dives for fish" in json.dumps(chunks)
    tasks = _flower_tasks(ops, ("parse",))
    # query traffic sends no task events: Flower lists ingestion only, and no question or text at all
    assert not {t["name"] for t in tasks.values()} & {"sluice.search", "sluice.document"}, tasks
    assert "kingfisher" not in json.dumps(tasks) and "dives" not in json.dumps(tasks)
    deadline = time.monotonic() + 10  # the "succeeded" line is written after the reply is sent
    while "sluice.document[" not in ops.log("query") or "succeeded" not in ops.log("query").rsplit("sluice.document[", 1)[1]:
        assert time.monotonic() < deadline, ops.log("query")[-3000:]
        time.sleep(0.2)
    assert "dives for fish" not in ops.log("query") and "where does the kingfisher" not in ops.log("query")


def test_long_documents_report_progress_as_counts_only(ingested):
    steps = [e for e in ingested["progress"] if e["total"] > 128]
    assert steps, ingested["progress"]
    for e in steps:
        assert set(e) - EVENT_FIELDS == {"done", "total"}, e  # counts only, never text
        assert 0 < e["done"] <= e["total"]
    assert any(e["done"] == e["total"] for e in steps)


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:  # a missing browser is a broken set-up, not a reason to skip silently
        pytest.fail("chromium is not installed: `apt-get install -y chromium` (.ci/run installs it)")
    return found


def dump_dom(url: str, profile: Path) -> str:
    """The page as a real browser rendered it (scripts run for up to 5 s of virtual time)."""
    out = subprocess.run(
        [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
         "--disable-extensions", f"--user-data-dir={profile}", "--virtual-time-budget=5000", "--dump-dom", url],
        capture_output=True, text=True, timeout=120, check=False,
    )
    return out.stdout


def test_browser_dashboard_shows_the_workers_and_the_broker_page_shows_the_queues(ops, ingested, tmp_path):
    from workers.runtime.flow import ALL_QUEUES

    host = ops.flower.removeprefix("http://")
    with_auth = f"http://{AUTH[0]}:{AUTH[1]}@{host}"
    assert "pipeline@test" not in dump_dom(f"http://{host}/", tmp_path / "anon")  # 401 without a login

    dom = dump_dom(f"{with_auth}/", tmp_path / "profile")
    table = dom[dom.find('id="workers-table"'):]
    assert "pipeline@test" in table and "query@test" in table, dom[:2000]

    deadline = time.monotonic() + 60  # the broker page lists the queues workers were seen consuming
    while True:
        dom = dump_dom(f"{with_auth}/broker", tmp_path / "profile")
        shown = set(re.findall(r"<td>([a-z_]+)</td>", dom[dom.find('id="queue-table"'):]))
        if set(ALL_QUEUES) <= shown or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert set(ALL_QUEUES) <= shown, dom[:3000]


def test_metrics_are_present_and_move_after_an_ingest(api, ingested):
    from workers.http.metrics import METRICS
    from workers.runtime.flow import ALL_QUEUES

    before, after = ingested["before"], scrape(api)

    def delta(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    names = {name for name, _ in after}
    missing = [m for m in METRICS if not names & {m, f"{m}_total", f"{m}_count"}]
    assert not missing, missing
    assert {dict(labels)["queue"] for name, labels in after if name == "sluice_queue_depth"} == set(ALL_QUEUES)
    assert delta("sluice_ingress_events_total", outcome="queued") == 3
    assert delta("sluice_events_finished_total", status="done") == 2
    assert delta("sluice_events_finished_total", status="failed") == 1
    assert delta("sluice_dead_lettered_total", stage="parse") == 1
    assert after[("sluice_dead_letters", (("stage", "parse"),))] >= 1
    assert delta("sluice_chunks_total", kind="embedded") == ingested["report"].chunks_embedded > 0
    for stage in CORE_STAGES:
        assert delta("sluice_task_duration_seconds_count", task=stage) >= 1, stage
        assert delta("sluice_task_duration_seconds_sum", task=stage) > 0, stage
    assert delta("sluice_task_runs_total", task="parse", outcome="failed") == 1
    assert after[("sluice_query_worker_up", ())] == 1
    assert after[("sluice_index_chunks", ())] >= ingested["report"].chunks_embedded
    assert after[("sluice_in_flight_events", ())] == 0


def test_a_fixed_file_is_retried_from_the_dead_letter_store(ops, ingested):
    from schemas.search import Mode, SearchRequest
    from workers import client

    listed = cli(ops, "dlq", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    (letter,) = [d for d in json.loads(listed.stdout) if d["key"] == "broken.txt"]
    assert letter["stage"] == "parse" and "empty" in letter["error"] and letter["document_now"] == "failing"
    shown = json.loads(cli(ops, "dlq", "show", letter["id"][:6]).stdout)
    assert shown["id"] == letter["id"] and shown["event"]["status"] == "failed"

    (ingested["docs"] / "broken.txt").write_text("The heron nests by the snarkhollow weir every spring.")
    retried = cli(ops, "dlq", "retry", letter["id"], "--wait")
    assert retried.returncode == 0, retried.stdout + retried.stderr
    assert f"{letter['id']}  broken.txt: done" in retried.stdout
    assert all(d["key"] != "broken.txt" for d in json.loads(cli(ops, "dlq", "list", "--json").stdout))
    hits = client.search(SearchRequest(q="snarkhollow", mode=Mode.lexical))
    assert hits and hits[0].key == "broken.txt"

    status = json.loads(cli(ops, "status", "--json").stdout)  # the single view of health
    assert {"pipeline@test", "query@test"} <= set(status["workers"]) and status["unconsumed_queues"] == []
    assert status["index"]["chunks"] >= 3 and status["in_flight"] == 0 and status["dead_letters"] == 0


def test_a_file_still_broken_fails_again_with_a_new_letter_and_purge_empties_the_store(ops, ingested):
    (ingested["docs"] / "still-broken.txt").write_bytes(b"")
    from workers import client
    from workers.runtime.config import settings

    st = client.connect(settings())
    client.ingest(st, settings(), client.events_for([ingested["docs"] / "still-broken.txt"], settings()), wait=True)
    (old,) = [d for d in st.dead_letters() if d["key"] == "still-broken.txt"]

    again = cli(ops, "dlq", "retry", "--all", "--wait", "--json")
    assert again.returncode == 1  # something is still failing: a script can tell
    (result,) = json.loads(again.stdout)
    assert result["status"] == "failed" and result["new_letter"] != old["id"]
    assert [d["id"] for d in st.dead_letters()] == [result["new_letter"]]

    purged = cli(ops, "dlq", "purge", "--yes")
    assert purged.returncode == 0 and "purged 1" in purged.stdout
    assert st.dead_letters() == []
