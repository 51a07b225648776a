"""End to end through a real Redis, real Celery workers and the real stages."""

from __future__ import annotations

import shutil
import signal
import threading
import time
from pathlib import Path

import pytest

from harness import SAMPLES
from schemas.search import Mode, SearchRequest



@pytest.fixture
def api(sluice):
    from workers import client
    from workers.runtime.config import settings

    st = client.connect(settings())

    class Api:
        state = st

        @staticmethod
        def ingest(*paths: Path):
            return client.ingest(st, settings(), client.events_for(list(paths), settings()), wait=True)

        @staticmethod
        def search(q: str, mode: Mode = Mode.hybrid, k: int = 10):
            return client.search(SearchRequest(q=q, mode=mode, k=k))

        @staticmethod
        def manifest(folder: Path):
            from workers.sources.folder import folder_source

            return client.manifest(folder_source(folder))

    return Api


def test_drop_search_reingest_edit_delete(api, tmp_path):
    docs = tmp_path / "docs"
    shutil.copytree(SAMPLES, docs)
    first = api.ingest(docs)
    assert first.failed == [] and first.indexed == first.documents == len(list(SAMPLES.iterdir()))
    assert first.chunks_embedded > 0

    hits = api.search("ORD-2024-8821", Mode.lexical)
    assert hits[0].key == "support-ticket.txt"
    assert "Margaret" not in hits[0].text and "<PERSON_" in hits[0].text  # redacted before indexing
    assert api.search("how often are the sand filters cleaned", Mode.dense)[0].key == "water-treatment-handbook.md"

    again = api.ingest(docs)
    assert (again.chunks_embedded, again.unchanged, again.indexed) == (0, first.documents, 0)

    handbook = docs / "water-treatment-handbook.md"
    handbook.write_text(handbook.read_text().replace("every thirty hours", "every forty-eight hours"))
    edited = api.ingest(docs)
    assert (edited.indexed, edited.chunks_embedded, edited.chunks_deleted) == (1, 1, 1)
    assert edited.chunks_reused >= 1
    assert "forty-eight" in api.search("how often are the sand filters backwashed", Mode.dense)[0].text

    (docs / "support-ticket.txt").unlink()
    removed = api.ingest(docs)
    assert removed.deleted == 1 and removed.chunks_deleted >= 1
    assert all(h.key != "support-ticket.txt" for h in api.search("ORD-2024-8821", Mode.lexical))


def test_same_event_ten_times_gives_no_duplicates(api, tmp_path):
    from workers.client import events_for
    from workers.runtime.config import settings
    from workers.stages.parse import parse

    folder = tmp_path / "replay"
    folder.mkdir()
    (folder / "note.md").write_text("# Replay\n\nThe replayed note about heron migration.\n\n## More\n\nSecond part.")
    report = api.ingest(folder)
    assert report.indexed == 1
    chunks = api.manifest(folder)
    (doc_id, info), = chunks.items()
    event = events_for([folder], settings())[0]
    api.state.reset_event(event)  # forget the stage marks, as after a Redis loss
    for _ in range(10):
        parse.delay(event.event_id)
    deadline = time.time() + 120  # each copy may run its whole chain before the first marks it done
    while api.state.event_info(event.event_id).get("status") not in ("done", "unchanged"):
        assert time.time() < deadline, api.state.event_info(event.event_id)
        time.sleep(0.1)
    time.sleep(1.5)  # let the other nine copies drain
    assert api.manifest(folder)[doc_id]["chunks"] == info["chunks"]
    assert len([h for h in api.search("heron migration", k=20) if h.doc_id == doc_id]) == info["chunks"]


def test_bad_input_is_dead_lettered_with_a_reason(api, tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "empty.txt").write_bytes(b"")
    (folder / "broken.pptx").write_bytes(b"PK\x03\x04 this is not really a zip archive")
    (folder / "good.txt").write_text("A perfectly fine document about kingfishers.")
    report = api.ingest(folder)
    assert report.indexed == 1
    reasons = {f["path"]: (f["stage"], f["error"]) for f in report.failed}
    assert reasons["empty.txt"][0] == "parse" and "empty" in reasons["empty.txt"][1]
    assert "broken.pptx" in reasons and reasons["broken.pptx"][1]
    letters = {d["key"] for d in api.state.dead_letters()}
    assert {"empty.txt", "broken.pptx"} <= letters


def test_killed_worker_mid_stage_completes_once(sluice, api, tmp_path):
    from workers.runtime.app import app

    folder = tmp_path / "kill"
    folder.mkdir()
    paragraphs = [f"Paragraph {i} about the migration of barn owls across region {i}. " * 12 for i in range(400)]
    (folder / "long.txt").write_text("\n\n".join(paragraphs))
    result: dict = {}
    t = threading.Thread(target=lambda: result.update(r=api.ingest(folder)))
    t.start()
    pid = None
    deadline = time.time() + 120
    while pid is None and time.time() < deadline:  # parse hands on to redact in the same task
        active = app.control.inspect(timeout=0.5).active() or {}
        for task in active.get("pipeline@test", []):
            if task["name"] == "sluice.parse" and api.state.event_info(task["args"][0]).get("stage") == "redact":
                pid = task["worker_pid"]
        time.sleep(0.05)
    assert pid, "never saw the long document being redacted"
    import os

    os.kill(pid, signal.SIGKILL)  # the OOM killer, in effect
    t.join(300)
    report = result["r"]
    assert report.indexed == 1 and report.failed == []
    (doc_id, info), = api.manifest(folder).items()
    assert info["chunks"] == report.chunks_embedded > 10


def test_every_real_world_file_of_the_shared_data_is_indexed_or_dead_lettered(api, shared_docs):
    docs = shared_docs
    report = api.ingest(docs)
    total = len([p for p in docs.iterdir() if p.is_file()])
    assert report.indexed + len(report.failed) == total
    for f in report.failed:
        assert f["stage"] and len(f["error"]) > 8 and "internal error" not in f["error"], f
    assert report.indexed >= total // 2


def test_parse_time_limit_dead_letters_instead_of_hanging(api, tmp_path, monkeypatch):
    from workers.runtime import config

    folder = tmp_path / "slow"
    folder.mkdir()
    (folder / "huge.txt").write_text("\n\n".join(f"Paragraph {i} is short but there are many." for i in range(20000)))
    monkeypatch.setenv("SLUICE_PARSE_TIME_LIMIT_S", "1")
    config.settings.cache_clear()
    started = time.monotonic()
    report = api.ingest(folder)
    monkeypatch.undo()
    config.settings.cache_clear()
    assert report.failed == [{"path": "huge.txt", "stage": "parse", "error": "parse took longer than its time limit"}]
    assert time.monotonic() - started < 30
