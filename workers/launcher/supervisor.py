"""``sluice up``: every process of a one-machine sluice, started and stopped together, and started
again, each on its own, when one exits unasked (its embedded Redis too)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
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


class StartFailed(RuntimeError):
    """``sluice up`` cannot start: a message for the person who ran it, never a traceback."""


def ports_in_use(s: Settings) -> list[str]:
    """Every port ``sluice up`` binds that is taken, as what to say and what to pass instead; checked before any
    process starts (Redis picks a free port of its own)."""
    wanted = [(s.api_host, s.api_port, "--api-port"), ("127.0.0.1", s.flower_port, "--flower-port")]
    said = []
    if s.api_port == s.flower_port:
        said.append(f"the API and Flower cannot share port {s.api_port}: pass --api-port or --flower-port")
    for host, port, option in wanted:
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn and Flower bind
            try:
                probe.bind((host, port))
            except OSError:
                said.append(f"port {port} is in use; pass {option}")
    return said


def _exited(name: str, logs: Path) -> StartFailed:
    log = logs / f"{name}.log"
    try:
        tail = log.read_text(errors="replace").strip().splitlines()[-3:]
    except OSError:
        tail = []
    return StartFailed(f"{name} exited during start-up; its log is {log}" + "".join(f"\n  | {t}" for t in tail))


def _answers(url: str, ok: Callable[[int], bool]) -> bool:
    import httpx

    try:
        return ok(httpx.get(url, timeout=1).status_code)
    except httpx.HTTPError:
        return False


def _workers_answer(needed: tuple[str, ...] = ("pipeline@", "query@")) -> list[str] | None:
    """The worker nodes, once a node of each kind answers a ping."""
    from workers.runtime.app import app

    try:
        names = sorted(n for reply in app.control.ping(timeout=0.5) or [] for n in reply)
    except Exception:  # Redis not answering yet: ask again on the next round  # noqa: BLE001
        return None
    return names if all(any(n.startswith(k) for n in names) for k in needed) else None


def _warm_embedder() -> float:
    """One search through the query worker: it opens the live generation and loads the embedding model."""
    from schemas.search import Mode, SearchRequest
    from workers.client import search

    started = time.monotonic()
    try:
        search(SearchRequest(q="warm up", k=1, mode=Mode.dense), timeout_s=180)
    except Exception as exc:  # noqa: BLE001  (a timeout or the worker's own error: said, not a traceback)
        raise StartFailed(f"the query worker did not answer a first search ({type(exc).__name__}: {exc}); "
                          "see query-worker.log in the logs") from None
    return time.monotonic() - started


def _start_up(stack: Stack, checks: dict[str, Callable[[], object]], timeout_s: float) -> None:
    """Name each part as it answers, in the order they come; a child that exits meanwhile stops it all."""
    deadline = time.monotonic() + timeout_s
    waiting = dict(checks)
    while waiting:
        dead = [n for n, p in stack.children().items() if p.poll() is not None]
        if dead:
            raise _exited(dead[0], stack.logs)
        for name, check in list(waiting.items()):
            answer = check()
            if answer:
                stack.say(f"{name} ready" + (f": {', '.join(answer)}" if isinstance(answer, list) else ""))
                del waiting[name]
        if time.monotonic() > deadline:
            raise StartFailed(f"{', '.join(waiting)} did not answer within {timeout_s:.0f}s; see the logs in "
                              f"{stack.logs}")
        time.sleep(0.3)


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
    taken = ports_in_use(s)
    if taken:
        print("\n".join(f"sluice up: {t}" for t in taken), file=sys.stderr)
        return 2
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
                stack.say(f"REDIS_URL {url} is not reachable; starting an embedded Redis instead")
            embedded = EmbeddedRedis(data / "redis")
            stack.redis(embedded)  # watched like the children: started again if it dies
            url = embedded.url
            stack.say(f"redis started (embedded, 127.0.0.1:{embedded.port}, data in {embedded.directory})")
        else:
            stack.say("redis: using REDIS_URL")
        write_private(data / REDIS_URL_FILE, url)  # it holds the password
        from workers.runtime.app import configure

        configure(url, s)  # this process asks the workers whether they answer
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
        stack.say(f"started the query worker, pipeline worker, beat, API and Flower (logs in {logs}); waiting for them")
        login = "from FLOWER_BASIC_AUTH" if auth_from == "FLOWER_BASIC_AUTH" else (
            f"{auth.replace(':', ' / ', 1)}, kept in {auth_from}")
        api_url = f"http://{s.api_host}:{s.api_port}"
        flower_url = f"http://127.0.0.1:{s.flower_port}"
        _start_up(stack, {
            "workers": _workers_answer,
            f"API ({api_url})": lambda: _answers(f"{api_url}/healthz", lambda code: code == 200),
            f"Flower ({flower_url})": lambda: _answers(flower_url, lambda code: code in (200, 401)),
        }, 120)
        stack.say("loading the embedding model in the query worker ...")
        stack.say(f"embedding model ready ({_warm_embedder():.1f}s)")
        stack.child("watcher", me + ["watch", str(s.inbox.resolve())], env)
        stack.record()
        stack.say(f"watcher started on {s.inbox.resolve()}")
        if ingest_samples and SAMPLES.is_dir():
            n = sum(1 for f in SAMPLES.iterdir() if f.is_file())
            stack.say(f"ingesting the {n} sample documents in {SAMPLES} (the first waits while the pipeline "
                      "worker loads the redaction model) ...")
            if stack.run(me + ["ingest", str(SAMPLES), "--wait", "--verbose"], env):
                stack.say(f"sample ingestion failed; see `sluice dlq list` and the logs in {logs}")
        print(
            f"\nsluice is up.\n  search:  {api_url}/search?q=...   (docs: {api_url}/docs)\n"
            f"  flower:  {flower_url}   (login {login})\n"
            f"  inbox:   {s.inbox.resolve()}  (drop files here)\n"
            f"  logs:    {logs}\nA process that exits is started again. Press Ctrl-C to stop.",
            flush=True,
        )
        while True:
            stack.keep()
            time.sleep(0.5)
    except StartFailed as exc:
        print(f"sluice up: {exc}", file=sys.stderr, flush=True)
        return 1
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
