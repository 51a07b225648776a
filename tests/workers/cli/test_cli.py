"""The `sluice` command line as a user runs it: real subprocesses, real workers.

`sluice up` is smoke-tested first on its own (embedded Redis, every process,
Ctrl-C stops all of it); then `ingest`, `status` and `search` talk to a private
sluice started by the test harness.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import httpx
import psutil
import pytest

from harness import SAMPLES, SLUICE, cli, no_traceback

REPORT_KEYS = {"documents", "indexed", "unchanged", "deleted", "failed", "chunks_embedded", "chunks_reused",
               "chunks_deleted", "elapsed_s"}
OWN_VARS = ("REDIS_URL", "QDRANT_URL", "SLUICE_DATA_DIR", "SLUICE_INBOX", "SLUICE_API_PORT", "SLUICE_FLOWER_PORT")


def clean_env(**extra: str) -> dict[str, str]:
    """The user's environment with no sluice pointed at."""
    env = {k: v for k, v in os.environ.items() if k not in OWN_VARS}
    return {**env, **extra}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_free(port: int) -> bool:
    """Nothing listens on the port any more (TIME_WAIT leftovers of closed connections are fine)."""
    listening = {c.laddr.port for c in psutil.net_connections(kind="tcp") if c.status == psutil.CONN_LISTEN}
    return port not in listening


def json_objects(text: str) -> list[dict]:
    """Every JSON value printed one after another (``sluice status DOC`` prints one per match)."""
    decoder, out, i = json.JSONDecoder(), [], 0
    text = text.strip()
    while i < len(text):
        value, i = decoder.raw_decode(text, i)
        out.append(value)
        while i < len(text) and text[i].isspace():
            i += 1
    return out


# -- sluice up (runs first, before the harness sluice below exists) ------------------------------


def _belongs_to(proc: psutil.Process, data: Path) -> bool:
    try:
        return str(data) in " ".join(proc.cmdline()) or proc.environ().get("SLUICE_DATA_DIR") == str(data)
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False


class Up:
    """`sluice up` as a user starts it in a terminal, with its output collected."""

    def __init__(self, tmp_path: Path, *extra: str) -> None:
        self.inbox, self.data = tmp_path / "inbox", tmp_path / "data"
        self.api_port, self.flower_port = free_port(), free_port()
        self.proc = subprocess.Popen(
            [*SLUICE, "up", "--inbox", str(self.inbox), "--data-dir", str(self.data), "--api-port",
             str(self.api_port), "--flower-port", str(self.flower_port), *extra],
            env=clean_env(), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True,  # its own process group, like a terminal's foreground job
        )
        self.lines: list[str] = []
        threading.Thread(target=lambda: self.lines.extend(iter(self.proc.stdout.readline, "")), daemon=True).start()
        self.family: list[psutil.Process] = []
        self.api = f"http://127.0.0.1:{self.api_port}"

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_until_up(self, timeout_s: float = 240) -> None:
        deadline = time.monotonic() + timeout_s
        while "sluice is up" not in self.output:
            assert self.proc.poll() is None, "sluice up exited:\n" + self.output
            assert time.monotonic() < deadline, "sluice up never came up:\n" + self.output
            time.sleep(0.2)
        self.redis_port = int((self.data / "redis.url").read_text().strip().rsplit(":", 1)[1].split("/")[0])
        self.family = psutil.Process(self.proc.pid).children(recursive=True)
        assert len(self.family) >= 6  # redis, query worker, worker (+ pool), api, flower, watcher

    def assert_stops_everything(self, sig: int, to_group: bool, within_s: float = 30) -> float:
        stop = time.monotonic()
        if to_group:
            os.killpg(self.proc.pid, sig)  # Ctrl-C in a terminal signals the whole foreground group
        else:
            self.proc.send_signal(sig)  # `kill PID`, systemd, docker stop
        assert self.proc.wait(within_s) == 0, self.output
        _, alive = psutil.wait_procs(self.family, timeout=max(0.1, within_s - (time.monotonic() - stop)))
        assert not alive, f"still running after {signal.Signals(sig).name}: {[p.cmdline() for p in alive]}"
        took = time.monotonic() - stop
        assert [p.pid for p in psutil.process_iter() if _belongs_to(p, self.data)] == []
        for port in (self.api_port, self.flower_port, self.redis_port):
            assert port_free(port), f"port {port} still in use"
        assert not (self.data / "redis.url").exists()
        return took

    def kill_leftovers(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        for p in self.family:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass


def test_up_serves_search_flower_and_the_inbox_then_stops_cleanly_on_ctrl_c(tmp_path):
    up = Up(tmp_path)
    try:
        up.wait_until_up()
        assert f"{up.api}/search" in up.output and f"http://127.0.0.1:{up.flower_port}" in up.output
        assert httpx.get(f"{up.api}/healthz", timeout=10).status_code == 200
        found = httpx.get(f"{up.api}/search", params={"q": "ORD-2024-8821"}, timeout=60)
        assert found.status_code == 200, found.text
        assert found.json()["hits"][0]["key"] == "support-ticket.txt"
        flower = f"http://127.0.0.1:{up.flower_port}/"
        assert httpx.get(flower, timeout=10).status_code == 401  # authenticated even on loopback
        user, password = (up.data / "flower-auth").read_text().strip().split(":", 1)
        assert f"login {user} / {password}" in up.output
        assert httpx.get(flower, auth=(user, password), timeout=10).status_code == 200

        (up.inbox / "dropped.txt").write_text("A note dropped into the inbox about the snarkhollow weir.")
        deadline = time.monotonic() + 60
        while True:
            hits = httpx.get(f"{up.api}/search", params={"q": "snarkhollow", "mode": "lexical"}, timeout=60).json()
            if any(h["key"] == "dropped.txt" for h in hits["hits"]):
                break
            assert time.monotonic() < deadline, "the dropped file never became searchable"
            time.sleep(0.2)

        took = up.assert_stops_everything(signal.SIGINT, to_group=True)
        print(f"\nsluice up stopped everything {took:.1f}s after Ctrl-C")
    finally:
        up.kill_leftovers()


def test_up_stops_everything_on_sigterm(tmp_path):
    up = Up(tmp_path, "--no-samples")
    try:
        up.wait_until_up()
        took = up.assert_stops_everything(signal.SIGTERM, to_group=False)
        print(f"\nsluice up stopped everything {took:.1f}s after SIGTERM")
    finally:
        up.kill_leftovers()


def test_up_starts_a_killed_worker_and_its_redis_again_and_still_ingests(tmp_path):
    up = Up(tmp_path, "--no-samples")
    try:
        up.wait_until_up()
        kept = json.loads((up.data / "supervisor.json").read_text())["children"]
        os.killpg(kept["worker"]["pid"], signal.SIGKILL)  # the worker and its pool, as the OOM killer would
        os.kill(kept["redis"]["pid"], signal.SIGKILL)
        deadline = time.monotonic() + 90
        while True:
            kept = json.loads((up.data / "supervisor.json").read_text())["children"]
            if all(kept[n]["restarts"] >= 1 and kept[n]["state"] == "running" for n in ("worker", "redis")):
                break
            assert up.proc.poll() is None, "sluice up stopped:\n" + up.output
            assert time.monotonic() < deadline, f"not restarted: {kept}\n{up.output}"
            time.sleep(0.5)
        assert kept["worker"]["last_exit"] == -signal.SIGKILL and "worker started again" in up.output
        assert "redis started again" in up.output

        note = tmp_path / "after-the-crash.txt"
        note.write_text("Written after the crash: the quillfeather ledger survived.")
        env = clean_env(SLUICE_DATA_DIR=str(up.data))
        ingested = cli(env, "ingest", str(note), "--wait", "--json", cwd=tmp_path)
        assert ingested.returncode == 0 and json.loads(ingested.stdout)["indexed"] == 1, ingested.stderr
        status = json.loads(cli(env, "status", cwd=tmp_path).stdout)
        assert status["supervisor"]["worker"]["restarts"] >= 1 and status["supervisor"]["redis"]["restarts"] >= 1

        up.family = psutil.Process(up.proc.pid).children(recursive=True)  # the restarted ones too
        up.assert_stops_everything(signal.SIGINT, to_group=True)
    finally:
        up.kill_leftovers()


# -- no running sluice ---------------------------------------------------------------------------


@pytest.mark.parametrize("redis", ["closed-port", "unset"])
def test_ingest_without_a_running_sluice_says_so_plainly(tmp_path, redis):
    doc = tmp_path / "note.txt"
    doc.write_text("hello")
    empty = tmp_path / "data"
    empty.mkdir()
    env = clean_env(SLUICE_DATA_DIR=str(empty))
    if redis == "closed-port":
        env["REDIS_URL"] = f"redis://127.0.0.1:{free_port()}/0"
    started = time.monotonic()
    result = cli(env, "ingest", str(doc), "--wait", cwd=tmp_path, timeout=60)
    elapsed = time.monotonic() - started
    assert result.returncode != 0
    assert "no running sluice" in result.stderr.lower(), result.stderr
    no_traceback(result)
    assert elapsed < 15, f"took {elapsed:.1f}s to notice"


# -- against a private sluice -------------------------------------------------------------------


@pytest.fixture(scope="module")
def docs(sluice):
    folder = sluice.root / "docs"
    shutil.copytree(SAMPLES, folder)
    (folder / "empty.txt").write_bytes(b"")  # a permanent failure, to see its shape in the report
    return folder


@pytest.fixture(scope="module")
def reports(sluice, docs):
    first = cli(sluice.env, "ingest", str(docs), "--wait", "--json", cwd=sluice.root, timeout=300)
    second = cli(sluice.env, "ingest", str(docs), "--wait", "--json", cwd=sluice.root)
    return first, second


def _report(result: subprocess.CompletedProcess[str]) -> dict:
    assert result.returncode == 0, result.stdout + result.stderr
    no_traceback(result)
    assert len(result.stdout.strip().splitlines()) == 1, result.stdout  # exactly one JSON object
    report = json.loads(result.stdout)
    assert isinstance(report, dict) and set(report) == REPORT_KEYS, report
    return report


def test_ingest_json_report(reports, docs):
    report = _report(reports[0])
    n = len(list(docs.iterdir()))
    assert report["documents"] == n
    assert (report["indexed"], report["unchanged"], report["deleted"]) == (n - 1, 0, 0)
    assert report["failed"] == [{"path": "empty.txt", "stage": "parse", "error": report["failed"][0]["error"]}]
    assert "empty" in report["failed"][0]["error"].lower()
    assert report["chunks_embedded"] >= n - 1 and report["chunks_reused"] == report["chunks_deleted"] == 0
    assert isinstance(report["elapsed_s"], float) and 0 < report["elapsed_s"] < 300


def test_ingest_again_embeds_nothing(reports, docs):
    report = _report(reports[1])
    n = len(list(docs.iterdir()))
    assert report["chunks_embedded"] == 0
    assert (report["documents"], report["indexed"], report["unchanged"]) == (n, 0, n - 1)
    assert [f["path"] for f in report["failed"]] == ["empty.txt"]  # still broken, still reported


def test_ingest_without_json_prints_a_summary(sluice, docs, reports):
    result = cli(sluice.env, "ingest", str(docs), "--wait", cwd=sluice.root)
    assert result.returncode == 0, result.stderr
    no_traceback(result)
    assert f"{len(list(docs.iterdir()))} documents:" in result.stdout
    assert "0 chunks embedded" in result.stdout and "failed empty.txt at parse" in result.stdout


def test_ingest_missing_path_is_a_clear_error(sluice):
    missing = sluice.root / "missing" / "path"
    result = cli(sluice.env, "ingest", str(missing), cwd=sluice.root)
    assert result.returncode != 0
    no_traceback(result)
    assert "missing/path" in result.stderr and "no such file" in result.stderr.lower(), result.stderr


def test_status_shows_queues_in_flight_and_dead_letters(sluice, reports):
    from workers.runtime.flow import ALL_QUEUES

    result = cli(sluice.env, "status", cwd=sluice.root)
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert set(status["queues"]) == set(ALL_QUEUES) and all(v == 0 for v in status["queues"].values())
    assert status["in_flight"] == 0
    assert status["dead_letters"] >= 1
    assert any(e["key"] == "empty.txt" and e["stage"] == "parse" for e in status["last_errors"])


def test_status_of_one_document_by_path_and_by_id_prefix(sluice, docs, reports):
    result = cli(sluice.env, "status", "support-ticket.txt", cwd=sluice.root)
    assert result.returncode == 0, result.stderr
    (doc,) = [d for d in json_objects(result.stdout) if d["key"] == "support-ticket.txt"]
    assert doc["content_hash"] == hashlib.sha256((docs / "support-ticket.txt").read_bytes()).hexdigest()
    assert doc["stages"][:4] == ["parse", "redact", "chunk", "diff"] and doc["stages"][-1] == "upsert"
    assert doc["chunks"] >= 1
    assert doc["last_event"]["status"] in ("done", "unchanged") and len(doc["last_event"]["event_id"]) == 32

    by_id = cli(sluice.env, "status", doc["doc_id"][:10], cwd=sluice.root)
    assert by_id.returncode == 0, by_id.stderr
    (same,) = json_objects(by_id.stdout)
    assert same["doc_id"] == doc["doc_id"] and same["content_hash"] == doc["content_hash"]

    nothing = cli(sluice.env, "status", "no-such-document.txt", cwd=sluice.root)
    assert nothing.returncode != 0 and "no document matches" in nothing.stderr
    no_traceback(nothing)


def test_search_json_hits(sluice, reports):
    result = cli(sluice.env, "search", "ORD-2024-8821", "--k", "3", "--json", cwd=sluice.root)
    assert result.returncode == 0, result.stderr
    hits = json.loads(result.stdout)
    assert 1 <= len(hits) <= 3
    for h in hits:
        assert {"doc_id", "key", "score", "text", "source"} <= set(h) and isinstance(h["score"], float)
    assert hits[0]["key"] == "support-ticket.txt" and "ORD-2024-8821" in hits[0]["text"]
    assert "Margaret" not in hits[0]["text"]  # redacted before indexing

    plain = cli(sluice.env, "search", "how often are the sand filters cleaned", cwd=sluice.root)
    assert plain.returncode == 0 and "water-treatment-handbook.md" in plain.stdout.splitlines()[0]
