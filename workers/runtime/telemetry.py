"""What workers record for ``/metrics``: how long each task runs, how it ended, and progress.

Everything goes to Redis, not to process memory: Celery runs many processes on
many machines, and the API's collector (workers/http/metrics.py) sums it all at
scrape time. Durations are counted into fixed buckets (a Prometheus histogram
kept as one Redis hash per task name); it costs one pipelined round trip a task.
Progress of long stages is reported as counts only, never text: Flower shows
every task's state and fields to every operator.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import redis
from celery import current_task
from celery.signals import task_postrun, task_prerun

from workers.runtime import resources
from workers.runtime.state import keys
from workers.runtime.state.base import text

log = logging.getLogger("sluice.telemetry")
BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, math.inf)
PROGRESS_EVERY = 128  # items (paragraphs, chunks) per progress step of a long document
_started: dict[str, float] = {}  # task id -> perf_counter at start (one process; threads use distinct ids)

T = TypeVar("T")


def bucket(seconds: float) -> str:
    """The smallest bucket bound that holds ``seconds`` (stored non-cumulative; summed at scrape)."""
    return _label(next(b for b in BUCKETS if seconds <= b))


def _label(bound: float) -> str:
    return "+Inf" if math.isinf(bound) else repr(bound)


def observe(r: redis.Redis, task: str, seconds: float, outcome: str, cpu_s: float | None = None) -> None:
    pipe = r.pipeline(transaction=False)
    count(pipe, task, seconds, outcome, cpu_s)
    pipe.execute()


def count(pipe: Any, task: str, seconds: float, outcome: str, cpu_s: float | None = None) -> None:
    """Queue one run's counts on a pipeline (a stage sends them with its done mark); ``cpu_s`` is
    the thread's CPU time, which other load on the machine does not inflate as it does ``seconds``."""
    pipe.hincrby(keys.LATENCY + task, bucket(seconds), 1)
    pipe.hincrbyfloat(keys.LATENCY + task, "sum", seconds)
    if cpu_s is not None:
        pipe.hincrbyfloat(keys.LATENCY + task, "cpu", cpu_s)
    pipe.hincrby(keys.RUNS, f"{task}|{outcome}", 1)


def latencies(r: redis.Redis) -> dict[str, tuple[list[tuple[str, int]], float]]:
    """Per task: cumulative (bound, count) buckets ending in +Inf, and the sum of seconds."""
    out = {}
    for key in r.scan_iter(keys.LATENCY + "*", count=500):
        raw = {text(k): text(v) for k, v in r.hgetall(key).items()}
        running, buckets = 0, []
        for b in BUCKETS:
            running += int(raw.get(_label(b), 0))
            buckets.append((_label(b), running))
        out[key.decode().removeprefix(keys.LATENCY)] = (buckets, float(raw.get("sum", 0.0)))
    return out


def stage_cpu(r: redis.Redis) -> dict[str, float]:
    """CPU seconds each stage has used so far (stages record their thread's CPU time)."""
    out = {}
    for key in r.scan_iter(keys.LATENCY + "*", count=500):
        cpu = r.hget(key, "cpu")
        if cpu is not None:
            out[key.decode().removeprefix(keys.LATENCY)] = float(cpu)
    return out


def runs(r: redis.Redis) -> dict[tuple[str, str], int]:
    found = {tuple(text(k).split("|", 1)): int(v) for k, v in r.hgetall(keys.RUNS).items()}
    return {(task, outcome): count for (task, outcome), count in found.items()}


def _outcome(retval: Any, state: str | None) -> str:
    """The stage's own verdict ("ok", "failed", "duplicate", ...) when it returned one, else Celery's state."""
    if state == "SUCCESS" and isinstance(retval, str) and len(retval) <= 20 and retval.isidentifier():
        return retval
    return (state or "unknown").lower()


@task_prerun.connect
def _start(task_id: str | None = None, **_: Any) -> None:
    if task_id:
        _started[task_id] = time.perf_counter()


@task_postrun.connect
def _stop(task_id: str | None = None, task: Any = None, retval: Any = None, state: str | None = None, **_: Any) -> None:
    started = _started.pop(task_id or "", None)
    name = getattr(task, "name", "") or ""
    if started is None or not name.startswith("sluice.") or getattr(task, "self_timed", False):
        return  # pipeline stages time themselves, also when one runs in place after another
    record(name.removeprefix("sluice."), time.perf_counter() - started, _outcome(retval, state))


def record(task: str, seconds: float, outcome: str, cpu_s: float | None = None) -> None:
    """One run of a task or stage; metrics must never fail the work."""
    try:
        observe(resources.state().r, task, seconds, outcome, cpu_s)
    except Exception as exc:
        log.debug("could not record the duration of %s: %s", task, exc)


def progress(done: int, total: int) -> None:
    """Tell Flower (a ``task-progress`` event: state PROGRESS) and the result backend how far a task is."""
    if not current_task or not current_task.request.id or current_task.request.called_directly:
        return  # not inside a worker's task (a test, a direct call)
    task = current_task
    try:
        task.update_state(state="PROGRESS", meta={"done": done, "total": total})
        task.send_event("task-progress", done=done, total=total)
    except Exception as exc:  # progress is a courtesy; the work goes on
        log.debug("could not report progress: %s", exc)


def in_steps(fn: Callable[[list[T]], Any], items: list[T], every: int = PROGRESS_EVERY) -> Any:
    """``fn(items)``, but for a long document in steps of ``every`` items, reporting progress after each.

    ``fn`` returns a list or a numpy array per step; the steps are joined in order.
    """
    if len(items) <= every:
        return fn(items)
    parts: list[Sequence[Any]] = []
    for start in range(0, len(items), every):
        parts.append(fn(items[start : start + every]))
        progress(min(start + every, len(items)), len(items))
    if hasattr(parts[0], "shape"):
        import numpy as np

        return np.concatenate(parts)  # type: ignore[arg-type]
    return [x for part in parts for x in part]
