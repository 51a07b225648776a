"""Handing an event on to its next stage: in this process when this worker consumes that
stage's queue, otherwise through the broker.

A hop through Redis costs a document about 5 ms of CPU (publish, fetch, task events,
ack) on top of the work itself, several times per document. Running the next stage in
place keeps everything else about it: its own supersession check, dead letter under
its own name and recorded duration. Which queues a worker consumes decides it, so a
deployment that runs every stage class on its own machines keeps one hop per stage.

A stage that hands on in place is marked done only after the stages it ran in place.
A worker killed midway gets the whole message again (late ack) and redoes the chain
from its first unfinished stage: a stage found done has handed on already.

A publish rides out a broker outage of up to ``publish_retry_s`` (the app's retry policy); past
that it raises ``PublishFailed``, a ConnectionError, so the step runtime treats it as transient:
the stage is not marked done, and its redelivered message or the in-flight sweep
(workers/runtime/sweep.py) brings the event back to it.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from kombu.exceptions import OperationalError

from workers.runtime.app import app
from workers.runtime.flow import STAGE_QUEUES, STEPS

QUEUES_ENV = "SLUICE_WORKER_QUEUES"  # set by `sluice worker` / `sluice query-worker` before the pool starts
_runners: dict[str, Callable[[str], Any]] = {}
_local = threading.local()


def runs_in_place(name: str, runner: Callable[[str], Any]) -> None:
    """Register how stage ``name`` runs without a message (skipping the duplicate check)."""
    _runners[name] = runner


def consumed() -> frozenset[str]:
    return frozenset(q for q in os.environ.get(QUEUES_ENV, "").split(",") if q)


class PublishFailed(ConnectionError):
    """The broker stayed unreachable for the whole publish retry: nothing was sent."""


def publish(name: str, args: tuple[Any, ...] = (), **options: Any) -> Any:
    """Send task ``sluice.<name>`` through the broker, by name (its module need not be imported).

    A flow step keeps no result: sent by name, Celery would otherwise subscribe the sender to its
    result channel (and unsubscribe later), two round trips per document for nothing."""
    if name in STEPS:
        options.setdefault("ignore_result", True)
    task = app.tasks.get(f"sluice.{name}")
    try:
        if task is None:
            return app.send_task(f"sluice.{name}", args, **options)
        return task.apply_async(args, **options)
    except OperationalError as exc:
        raise PublishFailed(f"could not send sluice.{name}: the broker is unreachable ({exc})") from exc


def hand_on(name: str, event_id: str, *, here: bool = False) -> None:
    """Queue step ``name`` for ``event_id``: after the current step here, or through the broker.

    ``here`` keeps it in this process whatever the queues (its input lives only in memory);
    otherwise it stays when this worker consumes its queue."""
    chain = getattr(_local, "chain", None)
    if chain is not None and name in _runners and (here or STAGE_QUEUES.get(name) in consumed()):
        chain.append((name, event_id))
    else:
        publish(name, (event_id,))


def hand_on_next(name: str, event_id: str) -> None:
    """Hand ``event_id`` on to the step that follows ``name`` in the flow (if any)."""
    step = STEPS[name]
    if step.next is not None:
        hand_on(step.next, event_id, here=step.next_in_place)


@contextmanager
def collecting() -> Iterator[list[tuple[str, str]]]:
    """Collect what the stage running inside hands on, instead of publishing it."""
    outer = getattr(_local, "chain", None)
    chain: list[tuple[str, str]] = []
    _local.chain = chain
    try:
        yield chain
    finally:
        _local.chain = outer


def run(chain: list[tuple[str, str]]) -> None:
    for name, event_id in chain:
        _runners[name](event_id)
