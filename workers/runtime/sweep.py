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
"""

from __future__ import annotations

import base64
import json
import logging
from collections import Counter

from schemas.events import Event
from schemas.settings import Settings
from workers.runtime import dispatch, resources
from workers.runtime.app import app, visibility_timeout
from workers.runtime.config import settings
from workers.runtime.flow import AFTER_UPSERT, ALL_QUEUES
from workers.runtime.state import TERMINAL, State

log = logging.getLogger("sluice.sweep")
UNACKED = "unacked"  # kombu's Redis transport: delivery tag -> [message, exchange, routing key]
LOST = "its record was lost from Redis while in flight; ingest the file again"


def stale_after(s: Settings) -> float:
    return s.stale_after_s if s.stale_after_s is not None else visibility_timeout(s)


def sweep(st: State, s: Settings) -> dict[str, int]:
    """Send every stale event on again; counts by what was done ("resent", "followups", "released", "lost")."""
    done: Counter[str] = Counter()
    stale = st.stale_in_flight(stale_after(s))
    held = held_events(st) if stale else set()
    for event_id in stale:
        if event_id in held:  # waiting in a queue, running, or due again from a worker that died
            continue
        info = st.event_info(event_id)
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


def held_events(st: State) -> set[str]:
    """Event ids some message still carries: queued (a queue is at most ``max_queue_depth`` long) or
    delivered and not acked yet (kombu's ``unacked`` hash: running, waiting for a retry's countdown,
    or held by a worker that died, which the visibility timeout brings back)."""
    messages = [m for q in ALL_QUEUES for m in st.r.lrange(q, 0, -1)]
    delivered = st.r.hvals(UNACKED)
    found = set()
    for raw, unwrap in [(m, False) for m in messages] + [(m, True) for m in delivered]:
        try:
            message = json.loads(raw)[0] if unwrap else json.loads(raw)
            args = json.loads(base64.b64decode(message["body"]))[0]
        except (ValueError, KeyError, IndexError, TypeError):
            continue  # not a task message of ours
        if args and isinstance(args[0], str):
            found.add(args[0])
    return found


def _resend(st: State, stage: str, event_id: str, kwargs: dict[str, float]) -> None:
    log.warning("event %s: no stage begun for a while; sending it to %s again", event_id, stage)
    dispatch.publish(stage, (event_id,), kwargs=kwargs)
    st.touch_in_flight(event_id)


@app.task(name="sluice.sweep", ignore_result=True)
def sweep_task() -> dict[str, int]:
    """Beat: one sweep of the in-flight set."""
    return sweep(resources.state(), settings())
