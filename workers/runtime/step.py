"""The one wrapper every stage and follow-up runs in, delivered or in place.

Begin (idempotency and supersession), this step's time limit, retry with
backoff, dead letter, timing, hand-on and the done mark live here only; a step
body loads its references, calls ``pipelines`` and records the result.

Errors end where they happen: each step catches its own body's errors and
turns them into its own retry or dead letter, and the steps a step runs in
place after itself (workers/runtime/dispatch.py) are wrapped steps too. So a failing
follow-up never climbs into the stage before it and never skips that stage's
done mark.

Stages (``flow.STAGES``) mark progress on the event, hand on only when they
succeed and are marked done after the steps they ran in place. Follow-ups
(``flow.FOLLOWUPS``) never change the event's status; they hand on whatever
their outcome, and the last of them releases the event from the in-flight set.
"""

from __future__ import annotations

import logging
import random
import signal
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import redis
from celery.exceptions import SoftTimeLimitExceeded

from pipelines.errors import PermanentError, TransientError
from schemas.events import Event
from workers.runtime import dispatch, flow, resources, tracing
from workers.runtime.app import app
from workers.runtime.config import settings
from workers.runtime.state import Expired, State
from workers.runtime.telemetry import count, record

log = logging.getLogger("sluice.step")
TRANSIENT = (TransientError, redis.ConnectionError, redis.TimeoutError, ConnectionError, TimeoutError)
Body = Callable[[State, Event], None]
Retry = Callable[..., Any]

BODIES: dict[str, Body] = {}
"""Each step's body by name (tests run one under the runtime without a broker)."""
_local = threading.local()  # the dead letters of the delivered task running in this thread


class DeadLettered(Exception):
    """Ends a delivered task in FAILURE after it (or a step it ran in place) was dead-lettered.

    Raised only once the dead letter is stored and the hand-on done: Celery acks a failed task
    (late acks included), records the state and sends ``task-failed`` with this readable reason, so
    Flower counts the document as failed. It is no retry: nothing is redelivered or dead-lettered twice."""


def step(name: str) -> Callable[[Body], Any]:
    """Register ``body`` as flow step ``name``: the Celery task ``sluice.<name>`` and its in-place runner."""
    flow.STEPS[name]  # a step the flow does not name is a mistake: fail at import

    def wrap(body: Body) -> Any:
        BODIES[name] = body

        @app.task(name=f"sluice.{name}", bind=True, max_retries=None, ignore_result=True, self_timed=True,
                  store_errors_even_if_ignored=True, throws=(DeadLettered,), acks_on_failure_or_timeout=True)
        def task(self: Any, event_id: str, limit_s: float | None = None) -> str:
            dead: list[str] = []
            _local.dead = dead
            try:
                with tracing.span(f"sluice.{name}", event_id, carrier=self.request, retries=self.request.retries):
                    outcome = run(name, event_id, self.request.retries, self.retry, limit_s)
            finally:
                _local.dead = None
            if dead and not self.request.is_eager:  # eager (tests' .apply) keeps the returned verdict
                raise DeadLettered("; ".join(dead))
            return outcome

        dispatch.runs_in_place(name, lambda event_id: _in_place(name, event_id))
        return task

    return wrap


def _in_place(name: str, event_id: str) -> str:
    with tracing.span(f"sluice.{name}", event_id, in_place=True):
        return run(name, event_id, 0, None)


def run(name: str, event_id: str, retries: int, retry: Retry | None, limit_s: float | None = None) -> str:
    """One step for one event; ``retry`` is None when it runs in place after the previous step.

    ``limit_s`` is this step's own time limit (the ingress gives parse one); the steps it hands
    on in place run after it, outside it, under the task's general limit."""
    spec = flow.STEPS[name]
    st = resources.state()
    opened = _open(st, name, spec, event_id)
    if isinstance(opened, str) and not spec.followup:
        tracing.annotate(outcome=opened)
        return opened  # a duplicate or superseded stage did nothing and records nothing
    if not isinstance(opened, str):
        tracing.annotate(doc_id=opened.doc_id)
    started, cpu_started, outcome = time.perf_counter(), time.thread_time(), "retry"  # unless the attempt returns
    with dispatch.collecting() as chain:
        try:
            outcome = opened if isinstance(opened, str) else attempt(name, st, opened, retries, retry, limit_s)
        finally:
            seconds, cpu_s = time.perf_counter() - started, time.thread_time() - cpu_started
            if spec.followup or outcome != "ok":
                record(name, seconds, outcome, cpu_s)
            tracing.annotate(outcome=outcome)
        if spec.followup and outcome != "retry":
            dispatch.hand_on_next(name, event_id)  # follow-ups go on whatever the outcome
    if outcome == "retry" or outcome != "ok" and not spec.followup:
        return outcome
    dispatch.run(chain)
    if spec.followup:
        if spec.next is None:
            st.release(event_id)  # the last follow-up: the event no longer counts as in flight
        return outcome
    pipe = st.r.pipeline(transaction=False)  # its counts and its done mark in one round trip
    count(pipe, name, seconds, outcome, cpu_s)  # thread CPU too: `sluice bench ingest` reports it per stage
    st.mark_stage_done(name, event_id, pipe)
    pipe.execute()
    return outcome


def _open(st: State, name: str, spec: flow.Step, event_id: str) -> Event | str:
    """The event to work on, or why not: "duplicate", "superseded" (a stage finishes it) or "expired"."""
    if not spec.followup:
        event = st.begin_stage(name, event_id)
        if event == "superseded":
            st.finish(event_id, "superseded")
        return event
    try:
        event = st.event(event_id)
    except Expired:
        return "expired"
    if not spec.runs_when_superseded and not st.is_latest(event):
        return "superseded"
    return event


def attempt(name: str, st: State, event: Event, retries: int, retry: Retry | None, limit_s: float | None) -> str:
    """Run the body once: "ok", "failed" (dead-lettered) or "retry" (scheduled again).

    A step whose worker died in it ``max_deliveries`` times is dead-lettered instead: late acks and
    reject-on-worker-lost would deliver it to the next worker without end."""
    crashes = st.count_start(name, event.event_id)
    try:
        if crashes >= settings().max_deliveries:
            return _fail(st, event, name, f"crashed the worker {crashes} times; not run again")
        return _run_body(name, st, event, retries, retry, limit_s)
    finally:
        st.count_finish(name, event.event_id)


def _run_body(name: str, st: State, event: Event, retries: int, retry: Retry | None, limit_s: float | None) -> str:
    event_id = event.event_id
    try:
        with _alarm(limit_s):
            BODIES[name](st, event)
    except SoftTimeLimitExceeded:
        return _fail(st, event, name, f"{name} took longer than its time limit")
    except PermanentError as exc:
        if isinstance(exc.__cause__, SoftTimeLimitExceeded):  # a parser wrapped the limit
            return _fail(st, event, name, f"{name} took longer than its time limit")
        return _fail(st, event, name, str(exc))
    except TRANSIENT as exc:
        if retries >= settings().max_retries:
            return _fail(st, event, name, f"gave up after {retries} retries: {exc}")
        return _retry_later(name, event_id, retries, retry, exc)
    except Expired as exc:  # an artifact expired: a later event brings the document back
        return _fail(st, event, name, f"artifact gone: {exc}")
    except Exception as exc:  # a bug: keep the event, tell the operator (where, never the message:
        # an exception's text can quote the document it choked on)
        where = "".join(traceback.format_tb(exc.__traceback__)[-3:])
        log.error("step %s failed for event %s: %s\n%s", name, event_id, type(exc).__name__, where)
        return _fail(st, event, name, f"internal error: {type(exc).__name__} (see the worker log)")
    return "ok"


def _backoff(retries: int) -> float:
    base = settings().retry_backoff_s * (2**retries)
    return min(base, 300.0) * random.uniform(0.5, 1.5)


def _retry_later(name: str, event_id: str, retries: int, retry: Retry | None, exc: Exception) -> str:
    """Back off and run the step again: Celery's own retry for a delivered task; a step that ran
    in place is published again, and its later retries take the delivered path."""
    tracing.note("retry", retries=retries, error=type(exc).__name__)  # the type: a message may quote text
    if retry is None:
        dispatch.publish(name, (event_id,), countdown=_backoff(0), retries=1)
        return "retry"
    raise retry(countdown=_backoff(retries), exc=exc)


def _fail(st: State, event: Event, name: str, reason: str) -> str:
    """Dead-letter the step. A stage fails its event; a follow-up only notes it on the document."""
    st.dead_letter(event.event_id, name, reason)
    tracing.note("dead_letter", stage=name, reason=reason)
    dead = getattr(_local, "dead", None)
    if dead is not None:
        dead.append(f"{name}: {reason}")
    if flow.STEPS[name].followup:
        st.note_document(event.doc_id, **{f"{name}_error": reason})
        return "failed"
    st.finish(event.event_id, "failed", error=reason, failed_stage=name)
    st.record_failed(event.doc_id, event.version, name, reason, last_event=event.event_id, key=event.key)
    st.drop_artifacts(event.event_id)
    return "failed"


@contextmanager
def _alarm(seconds: float | None) -> Iterator[None]:
    """Raise SoftTimeLimitExceeded after ``seconds`` (SIGALRM: the main thread of a prefork child or
    a solo worker; elsewhere only the task's general limit applies)."""
    if not seconds or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(*_: Any) -> None:
        raise SoftTimeLimitExceeded()

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
