"""The in-flight sweep: an event nobody works on any more is sent on again, so no outage leaves it
in flight for good.

A message can be lost without a trace: a hand-on or retry published while the broker was away past
``publish_retry_s``, a message acked as Redis went down, an ingress cut off between admitting an
event and queueing it. Each such event keeps its record and its place in the in-flight set, whose
time every stage's begin moves to now. Beat asks the index owner (``sluice.sweep`` on its ``query``
queue) every ``sweep_interval_s`` to look at events with no stage begun for ``stale_after_s`` (unset:
the visibility timeout) that no message carries any more, queued or delivered: each is sent again
from its first unfinished stage, which dead-letters it with a reason if its input is gone. Running a
stage twice is harmless (idempotent stages), so a false alarm costs only work.

A worker killed whole (main process and pool) leaves its messages unacked, and kombu hands them out
again only after the visibility timeout. Every stage records the process that runs it; once that
worker answers again (restarted, same node name) without that process, the sweep hands its
messages back at once.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from collections import Counter
from typing import Any

from schemas.events import Event
from schemas.settings import Settings
from workers.runtime import dispatch, resources
from workers.runtime.app import app, visibility_timeout
from workers.runtime.config import settings
from workers.runtime.flow import AFTER_UPSERT, ALL_QUEUES, FOLLOWUPS
from workers.runtime.state import TERMINAL, State, keys

log = logging.getLogger("sluice.sweep")
UNACKED = "unacked"  # kombu's Redis transport: delivery tag -> [message, exchange, routing key]
UNACKED_INDEX = "unacked_index"  # delivery tag -> delivered at (epoch s)
FOLLOWUP_TASKS = {f"sluice.{name}" for name in FOLLOWUPS}
RECLAIM_AFTER_S = 10.0  # a message delivered this long ago has begun its stage if its process lives
LOST = "its record was lost from Redis while in flight; ingest the file again"


def stale_after(s: Settings) -> float:
    return s.stale_after_s if s.stale_after_s is not None else visibility_timeout(s)


def sweep(st: State, s: Settings) -> dict[str, int]:
    """Hand back the messages of dead processes, send every stale event on again; counts by what was done
    ("reclaimed", "resent", "followups", "released", "lost")."""
    done: Counter[str] = Counter()
    carried, delivered = held(st)
    if reclaimed := reclaim(st, delivered):
        done["reclaimed"] = reclaimed
    for event_id in st.stale_in_flight(stale_after(s)):
        info = st.event_info(event_id)
        tasks = carried.get(event_id, set())
        if tasks and (info.get("status") not in TERMINAL or tasks & FOLLOWUP_TASKS):
            continue  # waiting, running, or due again from a dead worker (a stage's copy of a finished one is not)
        if "event" not in info:
            st.dead_letter(event_id, "sweep", LOST)
            st.forget_in_flight(event_id)
            done["lost"] += 1
            continue
        event = Event.model_validate_json(info["event"])
        if info.get("status") in TERMINAL:  # finished; its follow-ups' messages went missing
            if info["status"] == "done" and st.keeps_followups(event_id):
                _resend(st, AFTER_UPSERT, event_id, {})
                done["followups"] += 1
            else:
                st.release(event_id)
                done["released"] += 1
            continue
        stage = st.first_unfinished(event)
        if stage is None:  # every stage marked done: nothing is left to run for it
            st.release(event_id)
            done["released"] += 1
            continue
        _resend(st, stage, event_id, {"limit_s": s.parse_time_limit_s} if stage == "parse" else {})
        done["resent"] += 1
    if done:
        log.warning("in-flight sweep: %s", dict(done))
    return dict(done)


def held(st: State) -> tuple[dict[str, set[str]], dict[str, Any]]:
    """The tasks some message still carries per event: queued (a queue is at most ``max_queue_depth``
    long) or delivered and not acked yet (kombu's ``unacked`` hash: running, waiting for a retry's
    countdown, or held by a worker that died, which the visibility timeout brings back); and the
    delivered ones' delivery tags by event."""
    carried: dict[str, set[str]] = {}
    delivered: dict[str, Any] = {}
    messages = [(m, None) for q in ALL_QUEUES for m in st.r.lrange(q, 0, -1)]
    for raw, tag in messages + [(m, tag) for tag, m in st.r.hgetall(UNACKED).items()]:
        found = _carried(raw, unwrap=tag is not None)
        if found:
            carried.setdefault(found[0], set()).add(found[1])
            if tag is not None:
                delivered[found[0]] = tag
    return carried, delivered


def _carried(raw: bytes | str, unwrap: bool = False) -> tuple[str, str] | None:
    """(event id, task name) of a task message of ours: its first argument and its task header."""
    try:
        message = json.loads(raw)[0] if unwrap else json.loads(raw)
        args = json.loads(base64.b64decode(message["body"]))[0]
        task = message["headers"]["task"]
    except (ValueError, KeyError, IndexError, TypeError):
        return None
    return (args[0], task) if args and isinstance(args[0], str) else None


def reclaim(st: State, delivered: dict[str, Any]) -> int:
    """Hand back now the messages of stages whose process is gone although its worker answers (it was
    killed and started again): kombu would wait out the visibility timeout, as for any unacked message."""
    since = time.time() - RECLAIM_AFTER_S
    ids = [eid for eid, tag in delivered.items() if (st.r.zscore(UNACKED_INDEX, tag) or since) < since]
    pipe = st.r.pipeline(transaction=False)
    for eid in ids:
        pipe.hmget(keys.event(eid), "status", "runner")
    runners: dict[str, tuple[str, int]] = {}
    for eid, (status, who) in zip(ids, pipe.execute()):
        node, _, pid = (who or b"").decode().rpartition("/")
        if status == b"running" and node not in ("", "-") and pid.isdigit():
            runners[eid] = (node, int(pid))
    if not runners:
        return 0
    stats = app.control.inspect(destination=sorted({n for n, _ in runners.values()}), timeout=1.0).stats() or {}
    alive = {node: {s.get("pid"), *s.get("pool", {}).get("processes", [])} for node, s in stats.items()}
    dead = [eid for eid, (node, pid) in runners.items() if node in alive and pid not in alive[node]]
    if dead:
        with app.connection_for_write() as conn:
            qos = conn.default_channel.qos
            for eid in dead:
                log.warning("event %s: the process running it (%s) is gone; handing its message back now",
                            eid, "/".join(map(str, runners[eid])))
                qos.restore_by_tag(delivered[eid])
    return len(dead)


def _resend(st: State, stage: str, event_id: str, kwargs: dict[str, float]) -> None:
    log.warning("event %s: no stage begun for a while; sending it to %s again", event_id, stage)
    dispatch.publish(stage, (event_id,), kwargs=kwargs)
    st.touch_in_flight(event_id)


@app.task(name="sluice.sweep", ignore_result=True)
def sweep_task() -> dict[str, int]:
    """Beat: one sweep of the in-flight set."""
    return sweep(resources.state(), settings())
