"""A private sluice in a temporary directory: own Redis, real Celery workers.

Benchmarks, evaluations and integration tests start one of these, so they never
touch a running sluice or a shared Redis.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from workers.launcher.embedded_redis import EmbeddedRedis
from workers.launcher.keeper import Keeper
from workers.client import connect
from workers.runtime import config
from workers.runtime.app import app
from workers.runtime.flow import EMBEDDED_QUERY_QUEUES


class LocalSluice:
    def __init__(self, root: Path, persist: bool = False, restart: bool = False, **settings: str) -> None:
        """``persist``: Redis keeps its data across ``kill_redis``/``start_redis`` (RDB and AOF), as ``sluice up``'s
        does. ``restart``: a child that exits unasked is started again, as ``sluice up`` does (workers/launcher/keeper.py)."""
        self.root = root
        self.redis = EmbeddedRedis(root / "redis", persist=persist).start()
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
        self.keeper = Keeper(self._note) if restart else None
        self._closing = threading.Event()
        if self.keeper:
            threading.Thread(target=self._keep, name="keeper", daemon=True).start()

    def _spawn(self, name: str, args: tuple[str, ...]) -> subprocess.Popen[bytes]:
        log = (self.root / f"{name}.log").open("ab")
        return subprocess.Popen(
            [sys.executable, "-m", "workers.cli", *args], env=self.env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        proc = self.keeper.add(name, lambda: self._spawn(name, args)) if self.keeper else self._spawn(name, args)
        self.procs[name] = proc
        return proc

    def _note(self, line: str) -> None:
        with (self.root / "keeper.log").open("a") as f:
            f.write(f"{time.strftime('%H:%M:%S')} {line}\n")

    def _keep(self) -> None:
        assert self.keeper is not None
        while not self._closing.wait(0.5):
            if self.keeper.poll():
                self.procs.update(self.keeper.procs())

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

    def kill_redis(self) -> None:
        """SIGKILL the Redis server, as a crash or the out-of-memory killer would."""
        assert self.redis.proc is not None
        self.redis.proc.kill()
        self.redis.proc.wait()

    def start_redis(self) -> None:
        """Start Redis again on the same port with the same password (and, persisting, the same data)."""
        self.redis.start()

    def log(self, name: str) -> str:
        return (self.root / f"{name}.log").read_text(errors="replace")

    def stop(self, name: str, sig: int = signal.SIGTERM) -> None:
        if self.keeper:
            self.keeper.forget(name)
        p = self.procs.pop(name)
        if p.poll() is None:
            os.killpg(p.pid, sig)
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()

    def close(self) -> None:
        self._closing.set()
        for name in list(self.procs):
            self.stop(name)
        self.redis.stop()
        for k, v in self._saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        config.settings.cache_clear()
