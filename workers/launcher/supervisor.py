"""``sluice up``: every process of a one-machine sluice, started and stopped together, and started
again, each on its own, when one exits unasked (its embedded Redis too)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from schemas.settings import Settings
from workers.launcher import flower
from workers.launcher.embedded_redis import EmbeddedRedis, write_private
from workers.launcher.keeper import Keeper
from workers.launcher.signals import stop_as_on_ctrl_c
from workers.runtime.config import REDIS_URL_FILE, SUPERVISOR_FILE, reachable
from workers.runtime.flow import EMBEDDED_QUERY_QUEUES

ROOT = Path(__file__).resolve().parents[2]  # the repository (workers/launcher/supervisor.py)
SAMPLES = ROOT / "samples"


def _spawn(args: list[str], env: dict[str, str], log_dir: Path, name: str) -> subprocess.Popen[bytes]:
    log = (log_dir / f"{name}.log").open("ab")
    return subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def _wait_for_http(url: str, procs: dict[str, subprocess.Popen[bytes]], timeout_s: float) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        dead = [n for n, p in procs.items() if p.poll() is not None]
        if dead:
            raise RuntimeError(f"{', '.join(dead)} exited during start-up; see the logs in the data dir")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url} did not answer within {timeout_s:.0f}s")


def _signal_group(p: subprocess.Popen[bytes], sig: int) -> None:
    try:
        os.killpg(p.pid, sig)
    except ProcessLookupError:  # already gone
        pass


class Stack:
    """The children of ``sluice up`` and its embedded Redis, kept running (workers/launcher/keeper.py); what
    happens to them goes to the terminal and to ``supervisor.json``, which ``sluice status`` shows."""

    def __init__(self, data: Path, logs: Path) -> None:
        self.status_file, self.logs = data / SUPERVISOR_FILE, logs
        self.keeper = Keeper(self.say)

    def say(self, line: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} {line}", flush=True)

    def child(self, name: str, args: list[str], env: dict[str, str]) -> None:
        self.keeper.add(name, lambda: _spawn(args, env, self.logs, name))

    def redis(self, embedded: EmbeddedRedis) -> None:
        self.keeper.add("redis", lambda: _started(embedded))

    def children(self) -> dict[str, subprocess.Popen[bytes]]:
        return {n: p for n, p in self.keeper.procs().items() if n != "redis"}

    def keep(self) -> None:
        if self.keeper.poll():
            self.record()

    def record(self) -> None:
        write_private(self.status_file, json.dumps({"pid": os.getpid(), "children": self.keeper.summary()}))

    def run(self, args: list[str], env: dict[str, str]) -> int:
        """Run a command to its end while keeping the children up (a crash meanwhile is repaired)."""
        p = subprocess.Popen(args, env=env)
        while p.poll() is None:
            self.keep()
            time.sleep(0.5)
        return p.returncode


def _started(embedded: EmbeddedRedis) -> subprocess.Popen[bytes]:
    proc = embedded.start().proc
    assert proc is not None
    return proc


def run_all(s: Settings, ingest_samples: bool = True) -> int:
    stop_as_on_ctrl_c()  # the children run in their own sessions: nothing else would ever stop them
    data = s.data_dir.resolve()
    logs = data / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    stack = Stack(data, logs)
    embedded = None
    url = s.redis_url
    try:
        if not url or not reachable(url):
            if url:
                print(f"REDIS_URL {url} is not reachable; starting an embedded Redis instead")
            embedded = EmbeddedRedis(data / "redis")
            stack.redis(embedded)  # watched like the children: started again if it dies
            url = embedded.url
        write_private(data / REDIS_URL_FILE, url)  # it holds the password
        env = {**os.environ, "REDIS_URL": url, "SLUICE_DATA_DIR": str(data), "SLUICE_INBOX": str(s.inbox.resolve())}
        me = [sys.executable, "-m", "workers.cli"]
        stack.child("query-worker", me + ["query-worker", "--queues", ",".join(EMBEDDED_QUERY_QUEUES)], env)
        stack.child("worker", me + ["worker"], env)
        stack.child("beat", me + ["beat"], env)  # summary batches, graph communities, the in-flight sweep
        stack.child("api", me + ["api"], env)
        auth, auth_from = flower.credentials(data)  # authenticated even on loopback: see workers/launcher/flower.py
        stack.child("flower", flower.command(s.flower_port, data),
                    {**env, **flower.broker_env(url), "FLOWER_BASIC_AUTH": auth})
        stack.record()
        login = "from FLOWER_BASIC_AUTH" if auth_from == "FLOWER_BASIC_AUTH" else (
            f"{auth.replace(':', ' / ', 1)}, kept in {auth_from}")
        api_url = f"http://{s.api_host}:{s.api_port}"
        _wait_for_http(f"{api_url}/healthz", stack.children(), 120)
        stack.child("watcher", me + ["watch", str(s.inbox.resolve())], env)
        stack.record()
        if ingest_samples and SAMPLES.is_dir():
            print(f"ingesting the sample documents in {SAMPLES} ...", flush=True)
            if stack.run(me + ["ingest", str(SAMPLES), "--wait"], env):
                print("sample ingestion failed; see the logs", flush=True)
        print(
            f"\nsluice is up.\n  search:  {api_url}/search?q=...   (docs: {api_url}/docs)\n"
            f"  flower:  http://127.0.0.1:{s.flower_port}   (login {login})\n"
            f"  inbox:   {s.inbox.resolve()}  (drop files here)\n"
            f"  logs:    {logs}\nA process that exits is started again. Press Ctrl-C to stop.",
            flush=True,
        )
        while True:
            stack.keep()
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("\nstopping ...", flush=True)
        return 0
    finally:
        # A second Ctrl-C must not abandon the children half-way through stopping them.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        procs = stack.children()
        for p in procs.values():
            if p.poll() is None:
                _signal_group(p, signal.SIGTERM)
        deadline = time.monotonic() + 15  # one grace period for all, not 15 s each
        for p in procs.values():
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(p, signal.SIGKILL)
                p.wait()
        (data / REDIS_URL_FILE).unlink(missing_ok=True)
        stack.status_file.unlink(missing_ok=True)
        if embedded:
            embedded.stop()
