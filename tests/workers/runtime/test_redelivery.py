"""The whole pipeline worker dies mid-stage: only the broker's visibility timeout brings the work back.

test_pipeline.py kills one pool child; Celery's main process then rejects the message and it is
requeued at once. Here the main process dies too (SIGKILL to the worker's process group: an OOM
kill of the pod, a lost machine), so nobody acks or rejects the message. It stays in kombu's
``unacked`` hash until a Redis consumer's ``QoS.restore_visible`` finds it older than the
visibility timeout (the task limit or the longest retry countdown, plus 10%: workers/runtime/app.py)
and pushes it back onto its queue.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import psutil
import pytest

from harness import Sluice

# The soft limit (T - min(30, T/4) = 36 s) must hold a cold child's model load + redact (13-24 s seen under load);
# the visibility timeout the test waits out is T + 10 s = 58 s (retries back off 0.5 s x 2^4 x 1.5 = 12 s at most).
TASK_TIME_LIMIT_S = 48
VISIBILITY_S = 58
# ~50 kB, 60 chunks: redact = ~9 s model load + ~2 s (ample to find and kill); parse's own 120 s limit times parse only.
PARAGRAPHS = 60
NODE = "pipeline@test"


@pytest.fixture(scope="module")
def sluice(tmp_path_factory):
    s = Sluice(tmp_path_factory.mktemp("redelivery"), task_time_limit_s=str(TASK_TIME_LIMIT_S), retry_backoff_s="0.5",
               sweep_interval_s="2")  # beat runs only in the second test
    try:
        s.start_workers()
        yield s
    finally:
        s.close()


def _active(node: str, event_id: str) -> dict | None:
    """The sluice.parse task of ``event_id`` that ``node`` is running, if any."""
    from workers.runtime.app import app

    replies = app.control.inspect(destination=[node], timeout=1.0, limit=1).active() or {}
    return next((t for t in replies.get(node, []) if t["name"] == "sluice.parse" and t["args"][0] == event_id), None)


def _unacked(r, task_id: str) -> tuple[bytes, float] | None:
    """(delivery tag, delivery time) of the broker message for ``task_id`` kombu holds as unacked."""
    for tag, raw in r.hgetall("unacked").items():
        message = json.loads(raw)[0]
        if message["headers"]["id"] == task_id:
            return tag, r.zscore("unacked_index", tag)
    return None


def _running(p: psutil.Process) -> bool:
    """Alive and not a zombie (a SIGKILLed orphan waits for init to reap it, doing nothing meanwhile)."""
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _group(pgid: int) -> list[psutil.Process]:
    """Running processes of a process group."""
    found = []
    for p in psutil.process_iter():
        try:
            if os.getpgid(p.pid) == pgid and _running(p):
                found.append(p)
        except (ProcessLookupError, psutil.NoSuchProcess):
            pass
    return found


def _kill_worker_mid_redact(sluice, st, tmp_path):
    """Ingest one long document in a thread, catch it in redact and SIGKILL the whole pipeline worker.
    Returns (event id, the killed parse task, the ingest's result, the thread, when redact was seen, when
    killed, the killed worker's command)."""
    from workers import client
    from workers.runtime.config import settings
    from workers.runtime.state import TERMINAL

    folder = tmp_path / "kill-all"
    folder.mkdir()
    paragraphs = [f"Paragraph {i} about the migration of barn owls across region {i}. " * 12 for i in range(PARAGRAPHS)]
    (folder / "long.txt").write_text("\n\n".join(paragraphs))
    (event,) = client.events_for([folder], settings())
    event_id = event.event_id
    result: dict = {}
    ingest = threading.Thread(target=lambda: result.update(r=client.ingest(st, settings(), [event], wait=True)),
                              daemon=True)
    ingest.start()

    # 1. Catch the document in its redact stage (run in place inside the sluice.parse task).
    deadline = time.monotonic() + 90
    while (info := st.event_info(event_id)).get("stage") != "redact":
        assert info.get("status") not in TERMINAL, f"finished before reaching redact: {info}"
        assert time.monotonic() < deadline, f"never reached redact: {info}\n{sluice.log('pipeline')[-3000:]}"
        time.sleep(0.02)
    seen_at = time.time()
    task = _active(NODE, event_id)
    assert task, f"sluice.parse of {event_id} is not active on {NODE}: {st.event_info(event_id)}"

    # 2. SIGKILL the whole worker: the Celery main process and every pool child, no chance to ack or requeue.
    proc = sluice.procs["pipeline"]
    leader = psutil.Process(proc.pid)
    family = [leader, *leader.children(recursive=True)]
    assert task["worker_pid"] in {p.pid for p in family[1:]}, (task, family)
    os.killpg(proc.pid, signal.SIGKILL)
    killed_at = time.time()
    proc.wait(10)
    deadline = time.monotonic() + 10
    while left := [p for p in family if _running(p)] + _group(proc.pid):
        assert time.monotonic() < deadline, f"left behind after SIGKILL: {left}"
        time.sleep(0.05)
    sluice.procs.pop("pipeline")

    return event_id, task, result, ingest, seen_at, killed_at, proc.args[3:]


def test_whole_worker_killed_mid_stage_is_redelivered_after_visibility_timeout(sluice, tmp_path):
    from workers import client
    from workers.runtime.app import app
    from workers.runtime.config import settings
    from workers.runtime.flow import ALL_QUEUES
    from workers.runtime.state import TERMINAL
    from workers.runtime.telemetry import runs

    st = client.connect(settings())
    r = st.r
    visibility_s = app.conf.broker_transport_options["visibility_timeout"]
    assert visibility_s == VISIBILITY_S  # was 2 x the task limit (96 s)

    event_id, task, result, ingest, seen_at, killed_at, command = _kill_worker_mid_redact(sluice, st, tmp_path)
    info = st.event_info(event_id)
    assert (info["stage"], info["status"]) == ("redact", "running"), f"not killed mid-redact: {info}"
    held = _unacked(r, task["id"])
    assert held, f"the killed worker's message is not in kombu's unacked hash: {r.hkeys('unacked')}"
    tag, delivered_at = held
    assert r.llen("parse") == 0

    # 3. Until the visibility timeout has passed, the message stays unacked and nothing runs the document.
    while time.time() < delivered_at + visibility_s - 0.5:
        assert _unacked(r, task["id"]) == held and r.llen("parse") == 0, (
            f"the message came back {time.time() - delivered_at:.1f}s after delivery, "
            f"before the {visibility_s}s visibility timeout")
        assert st.event_info(event_id)["status"] == "running"
        time.sleep(0.5)
    time.sleep(max(0.0, delivered_at + visibility_s + 1 - time.time()))  # now expired: the next sweep restores it

    # 4. A fresh pipeline worker, started with the harness's own command. The first restore_visible sweep after
    # the timeout (in practice the fresh worker's own, run once when its consumer connects) requeues the
    # expired message; kombu's periodic sweeps come only every ~100 s. The test publishes nothing.
    sluice.start("pipeline", *command)
    sluice.wait_for_workers({NODE})
    fresh = {p.pid for p in psutil.Process(sluice.procs["pipeline"].pid).children(recursive=True)}
    deadline = time.monotonic() + 60
    while not (again := _active(NODE, event_id)):
        assert st.event_info(event_id)["status"] not in TERMINAL, "finished before the fresh worker was seen on it"
        assert time.monotonic() < deadline, (
            f"not redelivered {time.time() - delivered_at:.0f}s after delivery "
            f"(visibility timeout {visibility_s}s): unacked={_unacked(r, task['id'])}, "
            f"parse queue={r.llen('parse')}\n{sluice.log('pipeline')[-3000:]}")
        time.sleep(0.2)
    assert again["id"] == task["id"] and again["delivery_info"]["redelivered"] is True, again
    assert again["worker_pid"] in fresh
    redelivered = _unacked(r, task["id"])
    assert redelivered and redelivered[0] == tag and redelivered[1] >= delivered_at + visibility_s, (held, redelivered)

    # 5. What a user notices: the document is indexed once, completely, and nothing is left over.
    ingest.join(120)
    assert not ingest.is_alive(), f"ingest still waiting: {st.event_info(event_id)}"
    report = result["r"]
    assert report.indexed == 1 and report.failed == [], report
    (doc_id, doc), = client.manifest(None).items()
    assert doc["chunks"] == report.chunks_embedded > 10, (doc, report)
    chunks = client.ask("document", (doc_id,))
    assert [c["position"] for c in chunks] == list(range(report.chunks_embedded))
    assert client.ask("ping")["chunks"] == report.chunks_embedded  # the whole index: no stray copies

    deadline = time.monotonic() + 60  # follow-ups (graph, summary) hold the event in flight a little longer
    while st.in_flight() or any(st.queue_depth(q) for q in ALL_QUEUES) or r.hlen("unacked"):
        assert time.monotonic() < deadline, (
            f"left in flight: {r.zrange('sluice:inflight', 0, -1)}, "
            f"queues: {({q: st.queue_depth(q) for q in ALL_QUEUES})}, unacked: {r.hlen('unacked')}")
        time.sleep(0.2)
    stages = ("parse", "redact", "chunk", "diff", "embed", "upsert")  # each ran to completion exactly once
    done = runs(r)
    assert {(s, o): n for (s, o), n in done.items() if s in stages} == {(s, "ok"): 1 for s in stages}, done
    assert st.counters().get("done") == 1 and st.dead_letters() == []
    print(f"redelivered {redelivered[1] - delivered_at:.1f}s after the first delivery "
          f"(redact seen {seen_at - delivered_at:.1f}s, killed {killed_at - delivered_at:.1f}s after it; "
          f"visibility timeout {visibility_s}s)")


def test_a_restarted_worker_gets_the_work_of_its_killed_process_back_before_the_visibility_timeout(sluice, tmp_path):
    """The in-flight sweep (workers/runtime/sweep.py) sees that the worker answers again without the
    process its stage ran in, and hands the message back at once instead of waiting out the timeout."""
    from workers import client
    from workers.runtime.app import app
    from workers.runtime.config import settings

    st = client.connect(settings())
    visibility_s = app.conf.broker_transport_options["visibility_timeout"]
    sluice.start("beat", "beat")
    try:
        event_id, task, result, ingest, seen_at, killed_at, command = _kill_worker_mid_redact(sluice, st, tmp_path)
        held = _unacked(st.r, task["id"])
        assert held, "the killed worker's message is not unacked"
        delivered_at = held[1]
        sluice.start("pipeline", *command)
        sluice.wait_for_workers({NODE})
        restarted_at = time.time()
        deadline = time.monotonic() + 60
        while not (again := _active(NODE, event_id)):
            assert time.monotonic() < deadline, f"not handed back: {st.event_info(event_id)}\n{sluice.log('query')[-3000:]}"
            time.sleep(0.2)
        seen_again_at = time.time()
        back_s = seen_again_at - delivered_at
        assert again["id"] == task["id"] and again["delivery_info"]["redelivered"] is True, again
        assert back_s < visibility_s - 10, f"came back after {back_s:.0f}s, visibility timeout {visibility_s}s"
        assert "handing its message back now" in sluice.log("query")

        ingest.join(120)
        assert not ingest.is_alive(), f"ingest still waiting: {st.event_info(event_id)}"
        report = result["r"]
        assert report.indexed == 1 and report.failed == [], report
        assert client.ask("ping")["chunks"] == sum(d["chunks"] for d in client.manifest(None).values())  # no copies
        print(f"running again {back_s:.1f}s after the first delivery, {seen_again_at - killed_at:.1f}s after the kill "
              f"(worker up again {restarted_at - killed_at:.1f}s after it; visibility timeout {visibility_s}s)")
    finally:
        sluice.stop("beat")
