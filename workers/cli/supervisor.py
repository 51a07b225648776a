"""``sluice up``: every process of a one-machine sluice, started and stopped together."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from schemas.settings import Settings
from workers.cli import flower
from workers.cli.embedded_redis import EmbeddedRedis, write_private
from workers.runtime.config import REDIS_URL_FILE, reachable
from workers.runtime.flow import EMBEDDED_QUERY_QUEUES

ROOT = Path(__file__).resolve().parents[2]  # the repository (workers/cli/supervisor.py)
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


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _signal_group(p: subprocess.Popen[bytes], sig: int) -> None:
    try:
        os.killpg(p.pid, sig)
    except ProcessLookupError:  # already gone
        pass


def run_all(s: Settings, ingest_samples: bool = True) -> int:
    # `kill`, systemd and `docker stop` send SIGTERM: stop as cleanly as on Ctrl-C. The children
    # run in their own sessions, so nothing else would ever stop them. SIGINT is set explicitly
    # too: a process started in the background by a script inherits it ignored.
    signal.signal(signal.SIGTERM, _interrupted)
    signal.signal(signal.SIGINT, _interrupted)
    data = s.data_dir.resolve()
    logs = data / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    embedded = None
    url = s.redis_url
    if not url or not reachable(url):
        if url:
            print(f"REDIS_URL {url} is not reachable; starting an embedded Redis instead")
        embedded = EmbeddedRedis(data / "redis").start()
        url = embedded.url
    write_private(data / REDIS_URL_FILE, url)  # it holds the password
    env = {**os.environ, "REDIS_URL": url, "SLUICE_DATA_DIR": str(data), "SLUICE_INBOX": str(s.inbox.resolve())}
    me = [sys.executable, "-m", "workers.cli"]
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        procs["query-worker"] = _spawn(me + ["query-worker", "--queues", ",".join(EMBEDDED_QUERY_QUEUES)], env, logs,
                                      "query-worker")
        procs["worker"] = _spawn(me + ["worker"], env, logs, "worker")
        procs["beat"] = _spawn(me + ["beat"], env, logs, "beat")  # summary batches, graph communities
        procs["api"] = _spawn(me + ["api"], env, logs, "api")
        auth, auth_from = flower.credentials(data)  # authenticated even on loopback: see workers/cli/flower.py
        procs["flower"] = _spawn(flower.command(s.flower_port, data),
                                 {**env, **flower.broker_env(url), "FLOWER_BASIC_AUTH": auth}, logs, "flower")
        login = "from FLOWER_BASIC_AUTH" if auth_from == "FLOWER_BASIC_AUTH" else (
            f"{auth.replace(':', ' / ', 1)}, kept in {auth_from}")
        api_url = f"http://{s.api_host}:{s.api_port}"
        _wait_for_http(f"{api_url}/healthz", procs, 120)
        procs["watcher"] = _spawn(me + ["watch", str(s.inbox.resolve())], env, logs, "watcher")
        if ingest_samples and SAMPLES.is_dir():
            print(f"ingesting the sample documents in {SAMPLES} ...", flush=True)
            out = subprocess.run(me + ["ingest", str(SAMPLES), "--wait"], env=env, check=False)
            if out.returncode:
                print("sample ingestion failed; see the logs", flush=True)
        print(
            f"\nsluice is up.\n  search:  {api_url}/search?q=...   (docs: {api_url}/docs)\n"
            f"  flower:  http://127.0.0.1:{s.flower_port}   (login {login})\n"
            f"  inbox:   {s.inbox.resolve()}  (drop files here)\n"
            f"  logs:    {logs}\nPress Ctrl-C to stop.",
            flush=True,
        )
        while True:
            for name, p in procs.items():
                if p.poll() is not None:
                    print(f"{name} exited with {p.returncode}; stopping", flush=True)
                    return 1
            time.sleep(1)
    except KeyboardInterrupt:
        print("\nstopping ...", flush=True)
        return 0
    finally:
        # A second Ctrl-C must not abandon the children half-way through stopping them.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
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
        if embedded:
            embedded.stop()
