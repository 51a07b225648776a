"""Through the real query worker: searches never see a document half-updated, and a query worker
killed between writing a new version and making it visible leaves the index consistent.

A private sluice with real workers. The long document is markdown with a heading per
paragraph, so every paragraph is its own chunk; half the paragraphs name the edition.
"""

from __future__ import annotations

import re
import threading
import time

from conftest import wait_for

PARAGRAPHS = 10
EDITIONS = 50
EDITION = re.compile(r"edition (\d+)")


def edition(n: int) -> str:
    return "\n\n".join(f"# Part {i}\n\nPart {i} of the brackwater sluice log" + (f", edition {n}." if i % 2 else ", steady.")
                       for i in range(PARAGRAPHS)) + "\n"


def _ingest(path) -> None:  # type: ignore[no-untyped-def]
    from workers import client
    from workers.runtime.config import settings

    state = client.connect(settings())
    report = client.ingest(state, settings(), client.events_for([path], settings()), wait=True)
    assert report.failed == [], report


def _editions_seen(key: str = "log.md") -> tuple[set[int], int]:
    from schemas.search import Mode, SearchRequest
    from workers.client import search

    hits = [h for h in search(SearchRequest(q="brackwater sluice log", k=50, mode=Mode.lexical)) if h.key == key]
    return {int(m.group(1)) for h in hits for m in EDITION.finditer(h.text)}, len(hits)


def test_searches_during_fifty_edits_each_see_one_whole_version(sluice):
    path = sluice.root / "swap" / "log.md"
    path.parent.mkdir()
    path.write_text(edition(0))
    _ingest(path)
    seen: list[tuple[set[int], int]] = []
    failures: list[BaseException] = []
    stop = threading.Event()

    def searching() -> None:
        while not stop.is_set():
            try:
                seen.append(_editions_seen())
            except BaseException as e:  # a failed search is a finding too
                failures.append(e)

    readers = [threading.Thread(target=searching) for _ in range(3)]
    for r in readers:
        r.start()
    try:
        for n in range(1, EDITIONS + 1):
            path.write_text(edition(n))
            _ingest(path)
    finally:
        stop.set()
        for r in readers:
            r.join()
    assert not failures, failures[:3]
    bad = [s for s in seen if len(s[0]) != 1 or s[1] != PARAGRAPHS]
    assert len(seen) >= EDITIONS and not bad, f"{len(bad)} of {len(seen)} searches saw a half-changed document: {bad[:5]}"
    assert _editions_seen() == ({EDITIONS}, PARAGRAPHS)


def test_a_query_worker_killed_before_the_flip_leaves_the_old_version_whole(sluice):
    from pipelines.index import EdgeIndex
    from workers.runtime.config import settings
    from workers.runtime.flow import EMBEDDED_QUERY_QUEUES

    path = sluice.root / "crash" / "crash-log.md"
    path.parent.mkdir()
    path.write_text(edition(1))
    _ingest(path)
    queues = ",".join(EMBEDDED_QUERY_QUEUES)

    sluice.stop("query")
    sluice.env["SLUICE_FAILPOINT"] = "index.before_flip"
    try:
        crashing = sluice.start("query", "query-worker", "--name", "query@test", "--queues", queues)
    finally:
        del sluice.env["SLUICE_FAILPOINT"]
    sluice.wait_for_workers({"query@test"})
    path.write_text(edition(2))
    from workers import client

    state = client.connect(settings())
    client.ingest(state, settings(), client.events_for([path], settings()), wait=False)
    wait_for(lambda: crashing.poll() is not None, "the query worker to die at the failpoint", timeout_s=120)
    assert crashing.returncode == 70
    sluice.procs.pop("query")

    index = EdgeIndex(settings().index_path)  # what the restarted owner opens: the half-done change is undone
    try:
        payloads = list(index.payloads({"key": "crash-log.md"}))
        assert {p["doc_version"] for p in payloads} and len({p["doc_version"] for p in payloads}) == 1
        assert len(payloads) == PARAGRAPHS and all("edition 2" not in p["text"] for p in payloads)
        assert index.visibility.unfinished() == []
        doc_id = payloads[0]["doc_id"]
        everything = index.shard.count(index.q.CountRequest(filter=index._filter({"doc_id": doc_id}, None), exact=True))
        assert everything == PARAGRAPHS + index.count({"doc_id": doc_id}, kind="summary"), "hidden points were left"
    finally:
        index.close()
    sluice.start("query", "query-worker", "--name", "query@test", "--queues", queues)
    sluice.wait_for_workers({"query@test"})
    time.sleep(0.5)
    assert _editions_seen("crash-log.md") == ({1}, PARAGRAPHS)
