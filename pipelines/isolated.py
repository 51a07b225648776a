"""Calls run in a forked child that is stopped at a memory bound and killed at a time limit.

A parser is C code (lxml, libxml2) that no signal handler can interrupt and that can expand a
small file into gigabytes: a 460 KB .docx took a worker past 8 GB, and a worker the kernel kills
for it is delivered the same message again. In a child the address space is capped
(``RLIMIT_AS``: an allocation past it fails instead of growing), the parent kills the child at its
deadline, and what the child allocated goes back to the system when it exits.

One child serves a process's calls one at a time: forking a worker of 600 MB costs ~34 ms,
four times a small document's parse. It is forked after the parsers are imported (see
``pipelines.parse.prepare``), so it needs no import and no model load, and is replaced when it
dies, is killed, or keeps more than a quarter of its bound after a call. Linux (``/proc``, prctl).
"""

from __future__ import annotations

import ctypes
import os
import pickle
import resource
import select
import signal
import struct
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")
PR_SET_PDEATHSIG = 1  # prctl(2): the child is killed when its parent dies
_HEADER = struct.Struct("!Q")


class Stopped(Exception):
    """The call did not return: over its memory bound, past its deadline, or its child died."""

    def __init__(self, why: str, peak_rss_bytes: int) -> None:
        super().__init__(why)
        self.why = why  # "memory", "time", "signal <n>" or "exit <n>"
        self.peak_rss_bytes = peak_rss_bytes  # the child's peak resident size, inherited pages too


class Isolated:
    """A child process whose calls may each take ``memory_bytes`` above the process that forked it."""

    def __init__(self, memory_bytes: int) -> None:
        self.memory_bytes = memory_bytes
        self._lock = threading.Lock()
        self._child: _Child | None = None

    def run(self, fn: Callable[..., T], *args: Any, time_s: float) -> T:
        """``fn(*args)`` in the child: its value or exception here, or ``Stopped``. ``fn`` and ``args``
        travel pickled. A call that fails in a child that served others runs again in a fresh one,
        so a refusal is the call's own doing, never what earlier calls left behind."""
        with self._lock:
            child = self._fresh_child()
            try:
                return self._call(child, fn, args, time_s)
            except Stopped as stop:
                if stop.why == "time" or not child.calls:
                    raise
            return self._call(self._fresh_child(), fn, args, time_s)

    def _fresh_child(self) -> _Child:
        if self._child is None or self._child.owner != os.getpid():  # none yet, or forked with this process
            self._child = _Child(self.memory_bytes)
        return self._child

    def _call(self, child: _Child, fn: Callable[..., T], args: tuple[Any, ...], time_s: float) -> T:
        ok = False
        try:
            kind, value = child.call(pickle.dumps((fn, args)), time.monotonic() + time_s)
            ok = True
        finally:
            if not ok:  # stopped, or this process was interrupted (its own time limit): never left running
                self._child = None
                child.kill()
        if child.grew_by() > self.memory_bytes // 4:
            self._child = None
            child.retire()
        if kind == "error":
            raise value
        return value  # type: ignore[no-any-return]


class _Child:
    """One forked server: reads length-prefixed pickled calls, answers ("ok" | "error", value)."""

    def __init__(self, memory_bytes: int) -> None:
        self.owner, self.calls = os.getpid(), 0
        self._peak: int | None = None  # set once reaped
        self._why = ""
        request_r, self._request = os.pipe()
        self._answer, answer_w = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:
            os.close(self._request)
            os.close(self._answer)
            _serve(request_r, answer_w, memory_bytes)
        os.close(request_r)
        os.close(answer_w)
        self._rss_at_start = _rss(self.pid)

    def call(self, request: bytes, deadline: float) -> tuple[str, Any]:
        try:
            _write(self._request, request)
            answer = _read(self._answer, deadline)
        except BrokenPipeError:
            answer = b""
        if answer is None:
            raise Stopped("time", self.kill())
        if not answer:  # the child exited: its status says why
            peak = self._reap()
            raise Stopped(self._why, peak)
        self.calls += 1
        kind, value = pickle.loads(answer)
        if kind == "memory":
            peak = self.kill()
            raise Stopped("memory", peak)
        return kind, value

    def grew_by(self) -> int:
        return _rss(self.pid) - self._rss_at_start

    def kill(self) -> int:
        """SIGKILL and reap (once); the child's peak resident size."""
        if self._peak is None:
            os.kill(self.pid, signal.SIGKILL)  # a zombie until reaped: never ProcessLookupError
        return self._reap()

    def retire(self) -> None:
        """Close its request pipe: the child exits when it reads the end."""
        self._reap()

    def _reap(self) -> int:
        if self._peak is None:
            os.close(self._request)
            os.close(self._answer)
            _, status, usage = os.wait4(self.pid, 0)
            self._peak = usage.ru_maxrss * 1024
            self._why = f"signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status) else f"exit {os.WEXITSTATUS(status)}"
        return self._peak


def _serve(request_fd: int, answer_fd: int, memory_bytes: int) -> None:
    """The child: bound itself, then answer calls until the request pipe closes. Never returns."""
    parent = os.getppid()
    try:
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before the line above
            os._exit(1)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGALRM):
            signal.signal(sig, signal.SIG_DFL)
        limit = _address_space() + memory_bytes
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        while (request := _read(request_fd, None)) is not None and request:
            _write(answer_fd, _answer(request))
    finally:
        os._exit(0)


def _answer(request: bytes) -> bytes:
    try:
        fn, args = pickle.loads(request)
        return pickle.dumps(("ok", fn(*args)))
    except MemoryError:
        return pickle.dumps(("memory", None))
    except BaseException as exc:  # the caller sees it as raised there
        try:
            return pickle.dumps(("error", exc))
        except Exception:
            return pickle.dumps(("error", RuntimeError(f"{type(exc).__name__} (not picklable)")))


def _write(fd: int, payload: bytes) -> None:
    view = memoryview(_HEADER.pack(len(payload)) + payload)
    while view:
        view = view[os.write(fd, view) :]


def _read(fd: int, deadline: float | None) -> bytes | None:
    """One message; b"" when the other side closed the pipe, None at the deadline."""
    buffer = bytearray()
    size: int | None = None
    while size is None or len(buffer) < _HEADER.size + size:
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            return None
        if not select.select([fd], [], [], left)[0]:
            continue
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            return b""
        buffer += chunk
        if size is None and len(buffer) >= _HEADER.size:
            (size,) = _HEADER.unpack_from(buffer)
    return bytes(buffer[_HEADER.size :])


def _address_space() -> int:
    """This process's virtual size now: the bound is what a call may add to it."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def _rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (FileNotFoundError, ProcessLookupError):
        return 0
