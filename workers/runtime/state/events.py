"""Events and their progress: records, the latest event per document, stage marks, admission.

A stage's progress mark is written only while its event is unfinished (checked and set
atomically), so a late copy of an event can never set a finished one back to running.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from typing import Any

from celery import current_task

from schemas.events import Event
from workers.runtime.flow import ENTRY, STEPS, route
from workers.runtime.state import keys
from workers.runtime.state.base import TERMINAL, Base, Expired, as_fields, text

FOLLOWUP_ARTIFACTS = ("followup", "graphcontrib")  # kept from upsert until the last follow-up ends
# A stage's progress mark, written only while its event is unfinished (checked and set atomically, so a
# late copy of an event can never set a finished one back to running); returns {latest event of the doc, marked}.
# The mark also names the process running the stage ("<worker node>/<pid>") and moves the event's time in
# the in-flight set to now: the sweep (workers/runtime/sweep.py) reads them as the event's last sign of life.
_PROGRESS = """
local status = redis.call('HGET', KEYS[1], 'status')
local latest = redis.call('GET', KEYS[2])
for i = 5, #ARGV do
  if status == ARGV[i] then return {latest, 0} end
end
redis.call('HSET', KEYS[1], 'stage', ARGV[1], 'status', 'running', 'runner', ARGV[4])
redis.call('ZADD', KEYS[3], 'XX', ARGV[2], ARGV[3])
return {latest, 1}
"""


def runner() -> str:
    """This process as the sweep can ask after it: its Celery worker node and its pid."""
    request = getattr(current_task, "request", None)
    return f"{getattr(request, 'hostname', None) or '-'}/{os.getpid()}"


class Events(Base):
    _progress: Any  # the registered _PROGRESS script

    def put_event(self, event: Event) -> bool:
        """Record an event and mark it latest for its document. False if already known."""
        key = keys.event(event.event_id)
        created = self.r.hsetnx(key, "event", event.model_dump_json())
        if created:
            self.r.hset(key, mapping={"status": "queued", "stage": "admit", "doc_id": event.doc_id})
        self.r.expire(key, self.ttl)
        self.r.set(keys.latest_event(event.doc_id), event.event_id)
        return bool(created)

    def reset_event(self, event: Event) -> None:
        """(Re)start an event from scratch: forget earlier step marks of the same id."""
        self.r.delete(*(keys.stage_done(step, event.event_id) for step in STEPS))
        self.r.delete(keys.event(event.event_id))
        self.put_event(event)

    def event(self, event_id: str) -> Event:
        raw = self.r.hget(keys.event(event_id), "event")
        if raw is None:
            raise Expired(f"event {event_id} is unknown (expired or never admitted)")
        return Event.model_validate_json(raw)

    def event_info(self, event_id: str) -> dict[str, str]:
        return {text(k): text(v) for k, v in self.r.hgetall(keys.event(event_id)).items()}

    def statuses(self, event_ids: list[str]) -> list[str | None]:
        """Each event's status in one round trip (waiting clients poll thousands of events)."""
        pipe = self.r.pipeline(transaction=False)
        for event_id in event_ids:
            pipe.hget(keys.event(event_id), "status")
        return [text(v) if v else None for v in pipe.execute()]

    def is_latest(self, event: Event) -> bool:
        latest = self.r.get(keys.latest_event(event.doc_id))
        return latest is None or text(latest) == event.event_id

    def finish(self, event_id: str, status: str, release: bool = True, **fields: Any) -> None:
        """Terminal state for an event. It leaves the in-flight set unless follow-up work
        (graph, summary) still has to run for it: that work counts against the bounds too."""
        assert status in TERMINAL, status
        pipe = self.r.pipeline()
        pipe.hset(keys.event(event_id), mapping={"status": status, "finished_at": time.time(), **as_fields(fields)})
        if release:
            pipe.zrem(keys.IN_FLIGHT, event_id)
        pipe.incr(keys.counter(status))
        pipe.execute()

    def release(self, event_id: str) -> None:
        """The event's follow-up work is over: its kept artifacts go and it no longer counts as in flight."""
        pipe = self.r.pipeline(transaction=False)
        pipe.delete(*(keys.artifact(k, event_id) for k in FOLLOWUP_ARTIFACTS))
        pipe.zrem(keys.IN_FLIGHT, event_id)
        pipe.execute()
        memo = self._memo(event_id)
        for kind in FOLLOWUP_ARTIFACTS:
            memo.pop(kind, None)

    # -- admission ----------------------------------------------------------
    def admit(self, event_id: str) -> None:
        self.r.zadd(keys.IN_FLIGHT, {event_id: time.time()}, nx=True)

    def in_flight(self) -> int:
        return int(self.r.zcard(keys.IN_FLIGHT))

    def stale_in_flight(self, idle_s: float, limit: int = 1000) -> list[str]:
        """Events in flight with no stage begun for ``idle_s`` (oldest first)."""
        ids = self.r.zrangebyscore(keys.IN_FLIGHT, "-inf", time.time() - idle_s, start=0, num=limit)
        return [text(v) for v in ids]

    def touch_in_flight(self, event_id: str) -> None:
        """A sign of life for an event still in flight (it was sent on again)."""
        self.r.zadd(keys.IN_FLIGHT, {event_id: time.time()}, xx=True)

    def forget_in_flight(self, event_id: str) -> None:
        self.r.zrem(keys.IN_FLIGHT, event_id)

    def first_unfinished(self, event: Event) -> str | None:
        """The first stage of the event's route not marked done (None: all are)."""
        names = route(ENTRY[event.action.value])
        pipe = self.r.pipeline(transaction=False)
        for name in names:
            pipe.exists(keys.stage_done(name, event.event_id))
        return next((name for name, done in zip(names, pipe.execute()) if not done), None)

    def keeps_followups(self, event_id: str) -> bool:
        """Its upsert kept the chunks for the follow-ups, which have not released them yet."""
        return bool(self.r.exists(keys.artifact(FOLLOWUP_ARTIFACTS[0], event_id)))

    def queue_depth(self, queue: str) -> int:
        return int(self.r.llen(queue))

    def occupancy(self, queues: Iterable[str]) -> tuple[int, dict[str, int]]:
        """Events in flight and each queue's depth in one round trip: admission asks before every event."""
        names = list(queues)
        pipe = self.r.pipeline(transaction=False)
        pipe.zcard(keys.IN_FLIGHT)
        for q in names:
            pipe.llen(q)
        in_flight, *depths = pipe.execute()
        return int(in_flight), {q: int(d) for q, d in zip(names, depths)}

    # -- idempotency --------------------------------------------------------
    def mark_stage_done(self, stage: str, event_id: str, pipe: Any = None) -> None:
        (pipe or self.r).set(keys.stage_done(stage, event_id), 1, ex=self.ttl)

    def begin_stage(self, stage: str, event_id: str) -> Event | str:
        """A stage's entry checks and its progress mark in two round trips: "duplicate",
        "superseded", or the event to work on (kept in the thread for the stages run in place)."""
        memo = self._memo(event_id)
        pipe = self.r.pipeline(transaction=False)
        pipe.exists(keys.stage_done(stage, event_id))
        if "event" not in memo:
            pipe.hget(keys.event(event_id), "event")
        done, *raw = pipe.execute()
        if done:
            return "duplicate"  # and so are the stages it ran in place: it is marked after them
        if raw:
            if raw[0] is None:
                raise Expired(f"event {event_id} is unknown (expired or never admitted)")
            memo["event"] = Event.model_validate_json(raw[0])
        event: Event = memo["event"]
        latest, marked = self._progress(keys=[keys.event(event_id), keys.latest_event(event.doc_id), keys.IN_FLIGHT],
                                        args=[stage, time.time(), event_id, runner(), *sorted(TERMINAL)])
        if not marked:
            return "duplicate"  # a late copy of a finished event: only re-admission (reset_event) reopens it
        return event if latest is None or text(latest) == event_id else "superseded"

