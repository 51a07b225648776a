"""The `sluice` command line as a user runs it: real subprocesses, real workers.

`sluice up` is smoke-tested first on its own (embedded Redis, every process,
Ctrl-C stops all of it); then `ingest`, `status` and `search` talk to a private
sluice started by the test harness.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
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
        ready = [up.output.find(p) for p in ("workers ready: ", f"API ({up.api}) ready",
                                             f"Flower (http://127.0.0.1:{up.flower_port}) ready")]
        phases = [up.output.find("redis started"), min(ready), max(ready), up.output.find("embedding model ready"),
                  up.output.find("ingesting the 6 sample documents"), up.output.find("[6/6] indexed "),
                  up.output.find("sluice is up")]
        assert -1 not in phases + ready and phases == sorted(set(phases)), up.output  # each phase named as it happens
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
        status = json.loads(cli(env, "status", "--json", cwd=tmp_path).stdout)
        assert status["supervisor"]["worker"]["restarts"] >= 1 and status["supervisor"]["redis"]["restarts"] >= 1
        readable = cli(env, "status", cwd=tmp_path).stdout  # the restarts, as a person reads them
        assert re.search(r"\n {14}worker: running, \d+ restarts?\n", readable), readable
        assert re.search(r"\nprocesses {5}running: .*api", readable), readable

        up.family = psutil.Process(up.proc.pid).children(recursive=True)  # the restarted ones too
        up.assert_stops_everything(signal.SIGINT, to_group=True)
    finally:
        up.kill_leftovers()


def test_up_with_its_api_or_flower_port_taken_says_which_and_starts_nothing(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for option, other in (("--api-port", "--flower-port"), ("--flower-port", "--api-port")):
            started = time.monotonic()
            result = cli(clean_env(), "up", "--data-dir", str(tmp_path / "data"), option, str(port), other,
                         str(free_port()), cwd=tmp_path, timeout=60)
            assert result.returncode != 0 and time.monotonic() - started < 15
            no_traceback(result)
            assert f"port {port} is in use; pass {option}" in result.stderr, result.stderr
            assert len((result.stdout + result.stderr).strip().splitlines()) == 1
            assert not (tmp_path / "data" / "redis.url").exists()  # nothing was started


def test_up_help_shows_the_defaults():
    result = cli(clean_env(COLUMNS="200"), "up", "--help", cwd=Path.cwd())
    assert result.returncode == 0, result.stderr
    for option, default in (("--inbox", "inbox"), ("--data-dir", ".sluice"), ("--api-port", "8000"),
                            ("--flower-port", "5555")):
        (line,) = [line for line in result.stdout.splitlines() if f" {option} " in line]
        assert f"[default: ({default})]" in line, result.stdout


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
    # empty.txt is dead-lettered: the run says so and exits 1 (its JSON report is complete all the same)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 document of this run failed" in result.stderr and "sluice dlq list" in result.stderr, result.stderr
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


def test_ingest_without_json_prints_what_this_run_did(sluice, docs, reports):
    n = len(list(docs.iterdir()))
    result = cli(sluice.env, "ingest", str(docs), "--wait", cwd=sluice.root)
    assert result.returncode == 1, result.stderr
    no_traceback(result)
    assert result.stdout.startswith(f"{n} documents: {n - 1} unchanged, 1 failed; no chunks embedded in ")
    assert "failed empty.txt at parse" in result.stdout and "sluice dlq list" in result.stderr

    (docs / "water-treatment-handbook.md").write_text(
        (docs / "water-treatment-handbook.md").read_text() + "\n\nStaff photographs of the works are kept in the archive.\n")
    edited = cli(sluice.env, "ingest", str(docs), "--wait", "--verbose", cwd=sluice.root)
    assert re.match(rf"{n} documents: 1 indexed, {n - 2} unchanged, 1 failed; [1-9]\d* chunks embedded, \d+ reused",
                    edited.stdout.splitlines()[n]), edited.stdout
    assert "indexed water-treatment-handbook.md" in edited.stdout and "unchanged support-ticket.txt" in edited.stdout
    again = cli(sluice.env, "ingest", str(docs), "--wait", cwd=sluice.root)  # not the edit's counts once more
    assert again.stdout.startswith(f"{n} documents: {n - 1} unchanged, 1 failed; no chunks embedded"), again.stdout

    unchanged = cli(sluice.env, "ingest", str(docs / "support-ticket.txt"), cwd=sluice.root)
    assert unchanged.returncode == 0 and unchanged.stdout.strip() == "1 unchanged (already indexed, nothing to do)"


def test_ingest_missing_path_is_a_clear_error(sluice):
    missing = sluice.root / "missing" / "path"
    result = cli(sluice.env, "ingest", str(missing), cwd=sluice.root)
    assert result.returncode != 0
    no_traceback(result)
    assert "missing/path" in result.stderr and "no such file" in result.stderr.lower(), result.stderr


def test_status_shows_queues_in_flight_and_dead_letters(sluice, reports):
    from workers.runtime.flow import ALL_QUEUES

    result = cli(sluice.env, "status", "--json", cwd=sluice.root)
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
    assert plain.returncode == 0 and plain.stdout.splitlines()[1].startswith(" 1. 100%  water-treatment-handbook.md")


def test_status_reads_as_a_summary(sluice, reports):
    result = cli(sluice.env, "status", cwd=sluice.root)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) < 25, result.stdout
    heads = [line.split("  ")[0] for line in lines if line and not line.startswith(" ")]
    for head in ("queues", "in flight", "workers", "index", "graph", "dead letters", "last errors", "processes"):
        assert head in heads, result.stdout
    said = dict((line[:13].strip(), line[14:]) for line in lines if line[:13].strip())
    assert said["queues"].startswith("parse 0  redact 0") and said["in flight"].startswith("0 events")
    assert said["index"].startswith(f"{_indexed_chunks(sluice)} chunks; live generation g1")
    assert said["graph"].startswith("default: 6 documents, ")
    assert said["dead letters"].startswith("1 (parse 1)") and said["last errors"] == "empty.txt at parse: file is empty"
    assert "pipeline@test: chunk, embed, graph, parse, redact, summary" in result.stdout
    assert "ORD-2024-8821" not in result.stdout and "sand" not in result.stdout  # never a document's text


def _indexed_chunks(sluice) -> int:
    return json.loads(cli(sluice.env, "status", "--json", cwd=sluice.root).stdout)["index"]["chunks"]


def test_search_mistakes_are_said_plainly(sluice, reports):
    for args, said in ((("",), "cannot search: the query is empty"),
                       (("weir", "--filter", "colour:blue"), "cannot search: --filter: unknown filter field(s) ['colour']"),
                       (("weir", "--filter", "pdf"), "--filter takes field:value"),
                       (("weir", "--updated-after", "last tuesday"), "cannot search: --updated-after: ")):
        result = cli(sluice.env, "search", *args, cwd=sluice.root)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        no_traceback(result)
        assert result.stderr.startswith(said), (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_search_says_no_results_shows_rank_and_relevance_and_filters(sluice, reports):
    nothing = cli(sluice.env, "search", "zqxjvw", "--mode", "lexical", cwd=sluice.root)
    assert nothing.returncode == 0 and nothing.stdout.strip() == "no results", nothing.stdout

    plain = cli(sluice.env, "search", "sand filter backwash", "--k", "3", cwd=sluice.root)
    lines = plain.stdout.splitlines()
    assert lines[0].startswith("3 results (hybrid; relevance is relative to the best hit")
    assert lines[1].startswith(" 1. 100%  water-treatment-handbook.md § Filtration") and "matched: meaning + words" in lines[1]
    relevance = [int(line[4:8].strip().rstrip("%")) for line in lines[1::2]]
    assert relevance[0] == 100 and relevance == sorted(relevance, reverse=True) and 0 < relevance[-1] < 100

    for args, keys in ((("--prefix", "water"), {"water-treatment-handbook.md"}),
                       (("--prefix", "sup", "--file-type", "txt"), {"support-ticket.txt"}),
                       (("--file-type", "csv"), {"reservoir-levels.csv"}),
                       (("--filter", "key:security-advisory.html", "--created-after", "2000-01-01",
                         "--updated-before", "2999-12-31T00:00:00Z"), {"security-advisory.html"})):
        found = cli(sluice.env, "search", "water", "--json", *args, cwd=sluice.root)
        assert found.returncode == 0, (args, found.stderr)
        hits = json.loads(found.stdout)
        assert {h["key"] for h in hits} == keys, (args, hits)
    later = cli(sluice.env, "search", "water", "--created-after", "2999-01-01", cwd=sluice.root)
    assert later.stdout.strip() == "no results"


def test_a_search_leaves_no_result_behind_in_redis(sluice, reports):
    from workers.client import connect
    from workers.runtime.config import settings

    r = connect(settings()).r
    before = set(r.scan_iter("celery-task-meta-*"))
    assert cli(sluice.env, "search", "reservoir levels", cwd=sluice.root).returncode == 0
    assert set(r.scan_iter("celery-task-meta-*")) == before  # the hits were read, then forgotten


def test_graph_path_names_the_unknown_entity(sluice, reports):
    communities = json.loads(cli(sluice.env, "graph", "communities", "--json", cwd=sluice.root).stdout)
    name = communities[0]["entities"][0]["id"]  # an entity the samples gave the graph
    for a, b in ((name, "Qwyxzzle Holdings"), ("Qwyxzzle Holdings", name)):
        result = cli(sluice.env, "graph", "path", a, b, cwd=sluice.root)
        assert result.returncode == 1
        no_traceback(result)
        assert result.stderr.strip() == ("no entity 'Qwyxzzle Holdings' in the graph "
                                         "(try `sluice graph entities Qwyxzzle Holdings`)"), result.stderr


def test_ingest_of_a_change_already_on_its_way_says_so(sluice, reports):
    from workers.client import connect, events_for
    from workers.runtime.config import settings
    from workers.runtime.state import keys

    note = sluice.root / "on-its-way" / "note.txt"
    note.parent.mkdir()
    note.write_text("A note about the gravelwort sluice, seen by a watcher first.")
    st = connect(settings())
    (event,) = events_for([note], settings())
    st.put_event(event)  # another submitter admitted this very change; its worker has not finished it yet
    try:
        result = cli(sluice.env, "ingest", str(note), cwd=sluice.root)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "1 already on its way (queued earlier, not queued again)", result.stdout
    finally:
        st.r.delete(keys.event(event.event_id))
