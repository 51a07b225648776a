"""A benchmark stopped with SIGTERM (kill, systemd, a CI timeout) stops its private sluice as on Ctrl-C:
no Redis, no worker and no temporary folder is left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import psutil

from harness import SLUICE


def _started_from(tmp: str) -> list[psutil.Process]:
    """Processes whose command line, environment or working directory points into ``tmp`` (Redis rewrites
    its command line and environment, and works in its data directory)."""
    found = []
    for p in psutil.process_iter():
        try:
            if tmp in " ".join([*p.cmdline(), p.cwd(), *p.environ().values()]):
                found.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            pass
    return found


def test_bench_burst_stopped_with_sigterm_leaves_no_process_or_folder(tmp_path):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    bench = subprocess.Popen([*SLUICE, "bench", "burst", "--files", "200", "--bound", "8", "--json"],
                             env={**os.environ, "TMPDIR": str(tmp)}, cwd=tmp_path,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while len([p for p in _started_from(str(tmp)) if p.pid != bench.pid]) < 4:  # Redis, workers, a pool child
        assert bench.poll() is None, bench.communicate()
        assert time.monotonic() < deadline, "the bench's private sluice never came up"
        time.sleep(0.2)
    assert list(tmp.glob("sluice-burst-*"))
    bench.send_signal(signal.SIGTERM)
    _, err = bench.communicate(timeout=60)
    left = [p for p in _started_from(str(tmp)) if p.pid != bench.pid]
    _, alive = psutil.wait_procs(left, timeout=10)
    assert not alive, [p.cmdline() for p in alive]
    assert list(tmp.iterdir()) == [], f"left behind: {list(tmp.iterdir())}\n{err[-2000:]}"
