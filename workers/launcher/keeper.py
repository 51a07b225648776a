"""Children that come back: a process that exits without being asked is started again, later each time.

One crashed worker (an out-of-memory kill, a Celery consumer that gives up after a broker outage)
must not take the stack down, nor leave it up and broken. A child is started again after 1 s, then
2, 4 ... at most 30 s between starts, so one that crashes at once does not spin; a child that ran
for a minute since its last start is forgiven, and its next crash waits 1 s again.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

FIRST_DELAY_S, MAX_DELAY_S, FORGIVEN_AFTER_S = 1.0, 30.0, 60.0
Proc = subprocess.Popen[bytes]


@dataclass
class Kept:
    spawn: Callable[[], Proc]
    proc: Proc
    started: float  # time.monotonic() of the last start
    restarts: int = 0
    delay_s: float = 0.0
    due: float | None = None  # when it starts again (it exited), else None
    last_exit: int | None = None


class Keeper:
    def __init__(self, say: Callable[[str], None]) -> None:
        self.say = say
        self.kept: dict[str, Kept] = {}

    def add(self, name: str, spawn: Callable[[], Proc]) -> Proc:
        proc = spawn()
        self.kept[name] = Kept(spawn, proc, time.monotonic())
        return proc

    def forget(self, name: str) -> None:
        """Stop watching ``name`` (it is being stopped on purpose)."""
        self.kept.pop(name, None)

    def poll(self) -> bool:
        """Note what exited, start again what is due; True when anything changed."""
        changed, now = False, time.monotonic()
        for name, k in list(self.kept.items()):  # another thread may add or forget one meanwhile
            if k.due is None and k.proc.poll() is not None:
                forgiven = now - k.started >= FORGIVEN_AFTER_S or not k.delay_s
                k.delay_s = FIRST_DELAY_S if forgiven else min(k.delay_s * 2, MAX_DELAY_S)
                k.due, k.last_exit, changed = now + k.delay_s, k.proc.returncode, True
                self.say(f"{name} exited with {k.last_exit}; starting it again in {k.delay_s:.0f}s")
            if k.due is not None and now >= k.due:
                try:
                    k.proc = k.spawn()
                except Exception as exc:  # noqa: BLE001  (e.g. Redis did not come up: try again later)
                    k.due = now + k.delay_s
                    self.say(f"{name} did not start again ({exc}); next try in {k.delay_s:.0f}s")
                    continue
                k.started, k.due, changed = now, None, True
                k.restarts += 1
                self.say(f"{name} started again (pid {k.proc.pid}, restart {k.restarts})")
        return changed

    def procs(self) -> dict[str, Proc]:
        return {name: k.proc for name, k in self.kept.items()}

    def summary(self) -> dict[str, dict[str, Any]]:
        """What ``sluice status`` shows of each child."""
        return {name: {"state": "running" if k.due is None else "restarting", "pid": k.proc.pid,
                       "restarts": k.restarts, "last_exit": k.last_exit} for name, k in self.kept.items()}
