"""The one way in: every watcher, webhook and CLI call submits events here.

Admission control lives here because Redis lists have no maximum length:
submitters wait while too many documents are in flight or any queue is full,
so a burst of files can never grow a queue past its bound."""

from __future__ import annotations

import time

from schemas.events import Action, Event
from schemas.settings import Settings
from workers.runtime import dispatch, tracing
from workers.runtime.flow import ALL_QUEUES, ENTRY
from workers.runtime.state import TERMINAL, State


class Full(Exception):
    """The pipeline is at its bound; try again later (the webhook maps this to 503)."""


class Ingress:
    def __init__(self, state: State, settings: Settings) -> None:
        self.st = state
        self.s = settings

    def has_room(self) -> bool:
        in_flight, depths = self.st.occupancy(ALL_QUEUES)
        return in_flight < self.s.max_in_flight and all(d < self.s.max_queue_depth for d in depths.values())

    def wait_for_room(self, timeout_s: float | None = None) -> None:
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        pause = 0.01
        while not self.has_room():
            if deadline is not None and time.monotonic() >= deadline:
                raise Full("pipeline is full")
            time.sleep(pause)
            pause = min(pause * 2, 0.5)

    def submit(self, event: Event, timeout_s: float | None = None) -> tuple[str, str]:
        """Admit one event (waiting for room). Returns (event id, 'queued'|'unchanged'|'failed'|'duplicate').

        Every outcome, and every refusal for want of room, is counted for ``/metrics``.
        """
        try:
            with tracing.span("sluice.ingress", event.event_id, event.doc_id, action=event.action.value):
                event_id, outcome = self._submit(event, timeout_s)
                tracing.annotate(outcome=outcome)
        except Full:
            self.st.add_counter("ingress:full", 1)
            raise
        self.st.add_counter(f"ingress:{outcome}", 1)
        return event_id, outcome

    def _submit(self, event: Event, timeout_s: float | None) -> tuple[str, str]:
        known = self.st.event_info(event.event_id)
        if known and known.get("status") not in TERMINAL:
            return event.event_id, "duplicate"  # the same change, already on its way
        failed = self.st.failure(event.doc_id)
        if failed and failed["version"] == event.version and event.action != Action.delete and not event.force:
            if not known:  # known to fail: not parsed again until the content changes or `force`
                self.st.put_event(event)
                self.st.finish(event.event_id, "failed", error=failed["error"], failed_stage=failed["stage"])
            return event.event_id, "failed"
        indexed = self.st.indexed_version(event.doc_id)
        if event.action == Action.delete:  # only a delete Redis saw settles one: the index is the truth
            settled = indexed is None and self.st.document(event.doc_id).get("deleted") == "true"
        else:
            settled = indexed == event.version
        if settled and not event.force:  # observed again after it finished: this observation changes nothing
            self.st.reset_event(event)
            self.st.finish(event.event_id, "unchanged")
            return event.event_id, "unchanged"
        self.wait_for_room(timeout_s)
        self.st.reset_event(event)
        self.st.admit(event.event_id)
        first = ENTRY[event.action.value]
        # the per-document parse limit: a pathological file fails, it never hangs a worker
        limit = {"limit_s": self.s.parse_time_limit_s} if first == "parse" else {}
        dispatch.publish(first, (event.event_id,), kwargs=limit)
        return event.event_id, "queued"
