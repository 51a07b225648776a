"""Calls in a forked child: values and exceptions come back, a call over its memory bound or past its
deadline is stopped without touching this process, and one child serves call after call."""

from __future__ import annotations

import os
import signal
import time

import pytest

from pipelines.errors import MIB
from pipelines.isolated import Isolated, Stopped


def _allocate(size: int) -> int:
    return len(bytearray(size))


def _fail() -> None:
    raise ValueError("no such thing")


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_values_and_exceptions_come_back_from_one_long_lived_child() -> None:
    child = Isolated(256 * MIB)
    pids = {child.run(os.getpid, time_s=10) for _ in range(5)}
    assert len(pids) == 1 and os.getpid() not in pids
    with pytest.raises(ValueError, match="no such thing"):
        child.run(_fail, time_s=10)
    assert child.run(_allocate, 10 * MIB, time_s=10) == 10 * MIB


def test_a_call_over_its_memory_bound_is_stopped_and_this_process_keeps_its_size() -> None:
    child = Isolated(128 * MIB)
    before = _rss()
    with pytest.raises(Stopped) as stopped:
        child.run(_allocate, 1024 * MIB, time_s=10)
    assert stopped.value.why == "memory"
    assert stopped.value.peak_rss_bytes < before + 128 * MIB
    assert _rss() < before + 16 * MIB
    assert child.run(_allocate, 64 * MIB, time_s=10) == 64 * MIB  # a fresh child takes the next call


def test_a_call_past_its_deadline_is_killed_at_it() -> None:
    child = Isolated(128 * MIB)
    started = time.monotonic()
    with pytest.raises(Stopped) as stopped:
        child.run(time.sleep, 30, time_s=0.5)
    assert stopped.value.why == "time" and time.monotonic() - started < 5


def test_a_child_that_dies_says_how_and_is_replaced() -> None:
    child = Isolated(128 * MIB)
    with pytest.raises(Stopped) as stopped:
        child.run(_die, time_s=10)
    assert stopped.value.why == f"signal {signal.SIGKILL}"
    assert child.run(os.getpid, time_s=10) != os.getpid()


def test_an_interrupted_caller_leaves_no_child_behind() -> None:
    """The step runtime's SIGALRM raises in the waiting caller: the child must not outlive it."""
    child = Isolated(128 * MIB)
    pid = child.run(os.getpid, time_s=10)

    def interrupt(*_: object) -> None:
        raise TimeoutError

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, 0.3)
    try:
        with pytest.raises(TimeoutError):
            child.run(time.sleep, 30, time_s=60)
    finally:
        signal.signal(signal.SIGALRM, previous)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
