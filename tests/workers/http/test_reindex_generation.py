"""A forced re-index of the whole index through the real API and workers: every document is read again
from its source, a fresh generation is built, gated and switched to, the job's status walks through the
phases, searches never fail or come back empty, /metrics shows the build and the live generation, and
the build shows in Flower's source (Celery task events) as a task with PROGRESS.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from typing import Any

from fastapi.testclient import TestClient

from harness import SAMPLES

SECRET = "reindex-generation-secret"
QUERY = "how often are the sand filters cleaned"


def _post(http: TestClient, body: dict[str, Any]) -> Any:
    from workers.http.signing import sign

    raw, stamp = json.dumps(body).encode(), str(int(time.time()))
    return http.post("/webhooks/reindex", content=raw, headers={
        "Content-Type": "application/json", "X-Sluice-Timestamp": stamp, "X-Sluice-Signature": sign(SECRET.encode(), stamp, raw)})


def _metrics(http: TestClient) -> dict[str, float]:
    """Every sample of the sluice_generation_* families: {'name{labels}': value}."""
    out = {}
    for line in http.get("/metrics").text.splitlines():
        if line.startswith("sluice_generation_"):
            sample, value = line.rsplit(" ", 1)
            out[sample] = float(value)
    return out


def _build_events(stop: threading.Event, seen: list[dict[str, Any]]) -> None:
    """What Flower reads: the Celery task events of the build, as its event state keeps them."""
    from workers.runtime.app import app

    state = app.events.State()

    def on_event(event: dict[str, Any]) -> None:
        state.event(event)
        task = state.tasks.get(event.get("uuid", ""))
        if task is not None and task.name == "sluice.generation_build":
            seen.append({"state": task.state, "result": task.result, "worker": task.worker.hostname})

    with app.connection() as conn:
        receiver = app.events.Receiver(conn, handlers={"*": on_event})
        while not stop.is_set():
            try:
                for _ in receiver.itercapture(limit=None, timeout=0.5, wakeup=False):
                    if stop.is_set():
                        break
            except TimeoutError:
                continue
            except OSError:
                continue


def test_forced_reindex_of_everything_builds_a_fresh_generation_and_switches(sluice, monkeypatch):
    from schemas.search import Mode, SearchRequest
    from workers import client
    from workers.http.api import create_app
    from workers.runtime import config
    from workers.runtime.telemetry import runs

    docs = sluice.root / "docs"
    shutil.copytree(SAMPLES, docs)
    st = client.connect(config.settings())
    report = client.ingest(st, config.settings(), client.events_for([docs], config.settings()), wait=True)
    assert report.failed == [], report
    before = client.ask("generation", ("list", {}))
    assert before["live"] == "g1"
    parses = sum(n for (task, _), n in runs(st.r).items() if task == "parse")
    documents = len(client.manifest(None))

    monkeypatch.setenv("SLUICE_WEBHOOK_SECRET", SECRET)
    config.settings.cache_clear()
    answers: list[int] = []
    failures: list[BaseException] = []
    events: list[dict[str, Any]] = []
    stop = threading.Event()

    def searching() -> None:
        while not stop.is_set():
            try:
                answers.append(len(client.search(SearchRequest(q=QUERY, k=5, mode=Mode.hybrid))))
            except BaseException as e:
                failures.append(e)

    threads = [threading.Thread(target=searching), threading.Thread(target=_build_events, args=(stop, events))]
    for t in threads:
        t.start()
    phases: list[str] = []
    during: dict[str, float] = {}
    try:
        with TestClient(create_app()) as http:
            time.sleep(1.0)  # the event receiver is listening
            r = _post(http, {"scope": "all", "force": True})
            assert r.status_code == 202, r.text
            job_id = r.json()["job_id"]
            deadline = time.monotonic() + 300
            while (job := st.job(job_id)) and job["finished_at"] is None:
                assert time.monotonic() < deadline, job
                if not phases or phases[-1] != job["status"]:
                    phases.append(job["status"])
                if job["status"] == "building" and not during:
                    during = _metrics(http)
                time.sleep(0.1)
            after = _metrics(http)
    finally:
        stop.set()
        for t in threads:
            t.join()
        config.settings.cache_clear()

    assert job["status"] == "done", job
    assert "building" in phases and phases[-1] in ("building", "comparing", "switching"), phases
    made = job["generation"]
    assert made["name"] == "g2" and made["live"] is True and made["previous"] == "g1" and made["gate"]["passed"]
    assert made["chunks_done"] == made["chunks_total"] > 0
    listed = client.ask("generation", ("list", {}))
    assert listed["live"] == "g2" and listed["generations"]["g2"]["chunks"] == listed["generations"]["g1"]["chunks"]
    assert sum(n for (task, _), n in runs(st.r).items() if task == "parse") >= parses + documents, "not re-read"
    hits = client.search(SearchRequest(q=QUERY, k=5, mode=Mode.hybrid))
    assert hits and any("filter" in h.text.lower() for h in hits)

    assert not failures, failures[:3]
    assert answers and all(answers), "a search came back empty during the forced re-index"

    space = listed["generations"]["g2"]["space"]
    assert after[f'sluice_generation_live{{backend="{made["backend"]}",generation="g2",space="{space}"}}'] == 1.0
    assert after['sluice_generation_building{generation="g2"}'] == 0.0
    chunks = listed["generations"]["g2"]["chunks"]
    assert after['sluice_generation_build_chunks_done{generation="g2"}'] == chunks
    assert after['sluice_generation_build_chunks_total{generation="g2"}'] == chunks
    assert after['sluice_generation_chunks{generation="g1"}'] == chunks
    if during:  # caught while building: the build shows as running
        assert during['sluice_generation_building{generation="g2"}'] == 1.0

    states = [e["state"] for e in events]
    assert "PROGRESS" in states and states[-1] == "SUCCESS", states
    assert events[-1]["worker"] == "query@test" and events[-1]["result"].startswith(f"g2 ready: {chunks} chunks")
