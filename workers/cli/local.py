"""A private sluice in a temporary directory: own Redis, real Celery workers.

Benchmarks, evaluations and integration tests start one of these, so they never
touch a running sluice or a shared Redis.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from workers.cli.embedded_redis import EmbeddedRedis
from workers.client import connect
from workers.runtime import config
from workers.runtime.app import app
from workers.runtime.flow import EMBEDDED_QUERY_QUEUES


class LocalSluice:
    def __init__(self, root: Path, **settings: str) -> None:
        self.root = root
        self.redis = EmbeddedRedis(root / "redis", persist=False).start()
        self.env = {
            **os.environ,
            "REDIS_URL": self.redis.url,
            "SLUICE_DATA_DIR": str(root / "data"),
            "SLUICE_INBOX": str(root / "inbox"),
            **{f"SLUICE_{k.upper()}": v for k, v in settings.items()},
        }
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._saved_env = {k: os.environ.get(k) for k in self.env}
        os.environ.update(self.env)
        config.settings.cache_clear()

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = (self.root / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", "workers.cli", *args], env=self.env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs[name] = proc
        return proc

    def start_workers(self, concurrency: int = 2) -> None:
        self.start("query", "query-worker", "--name", "query@test", "--queues", ",".join(EMBEDDED_QUERY_QUEUES))
        self.start("pipeline", "worker", "--concurrency", str(concurrency), "--name", "pipeline@test")
        self.wait_for_workers({"query@test", "pipeline@test"})

    def wait_for_workers(self, names: set[str], timeout_s: float = 120) -> None:
        connect(config.settings())
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for name, p in self.procs.items():
                if p.poll() is not None:
                    raise RuntimeError(f"{name} died:\n{self.log(name)[-3000:]}")
            replies = app.control.ping(timeout=0.5) or []
            if names <= {n for r in replies for n in r}:
                return
        raise TimeoutError(f"workers {names} did not come up")

    def log(self, name: str) -> str:
        return (self.root / f"{name}.log").read_text(errors="replace")

    def stop(self, name: str, sig: int = signal.SIGTERM) -> None:
        p = self.procs.pop(name)
        if p.poll() is None:
            os.killpg(p.pid, sig)
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()

    def close(self) -> None:
        for name in list(self.procs):
            self.stop(name)
        self.redis.stop()
        for k, v in self._saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        config.settings.cache_clear()
