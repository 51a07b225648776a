"""A search sees one whole version of a document while it changes, and a crash mid-change leaves nothing half-done.

Both index backends, real Qdrant Edge and qdrant-client's in-memory server; searches
run in threads while a long document is edited; crashes are real (a subprocess that
dies with ``os._exit`` at a failpoint, as a SIGKILL would leave it).
"""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from pipelines.diff import plan
from pipelines.index import EdgeIndex, ServerIndex
from pipelines.upsert import DocumentMeta, apply_plan
from schemas.documents import Element, RedactedDocument

PARAGRAPHS = 12


def edition(n: int) -> list[str]:
    """Half the paragraphs change with every edition, half stay (reused chunks), all mention the weir."""
    return [f"Paragraph {i} of the quarrelwick weir log" + (f", edition {n}." if i % 2 else ", unchanged.")
            for i in range(PARAGRAPHS)]


def write(index, chunker, embedder, bm25, n: int) -> None:  # type: ignore[no-untyped-def]
    doc = RedactedDocument(file_type="txt", elements=[Element(text=t, section=str(i)) for i, t in enumerate(edition(n))])
    chunks = chunker.chunk("log", doc)
    p = plan(chunks, index.chunk_hashes("log"), space=embedder.space)
    meta = DocumentMeta(source="folder:/x", key="log.txt", tenant="default", file_type="txt", version=f"v{n}",
                        pii_counts={}, vectors=embedder.space)
    apply_plan(index, chunks, p, embedder.embed([chunks[i].text for i in p.embed]), bm25, meta)


@pytest.fixture(params=["edge", "server"])
def index(request, tmp_path):
    idx = EdgeIndex(tmp_path / "edge") if request.param == "edge" else ServerIndex(":memory:", "t")
    yield idx
    idx.close()


@pytest.mark.integration  # 50 edits with embedding: too slow for the unit tier
def test_every_search_during_fifty_edits_sees_one_whole_version(index, chunker, embedder, bm25):
    write(index, chunker, embedder, bm25, 0)
    seen: list[tuple[set[str], int, tuple[bool, bool]]] = []
    stop = threading.Event()

    query = "quarrelwick weir log"
    dense, sparse = embedder.embed([query])[0], bm25.query(query)

    def searching(mode: tuple[bool, bool]) -> None:
        while not stop.is_set():
            hits = index.query(dense if mode[0] else None, sparse if mode[1] else None, 50)
            seen.append(({h.payload["doc_version"] for h in hits}, len(hits), mode))

    readers = [threading.Thread(target=searching, args=(m,)) for m in ((True, True), (False, True), (True, False))]
    for r in readers:
        r.start()
    try:
        for n in range(1, 51):
            write(index, chunker, embedder, bm25, n)
    finally:
        stop.set()
        for r in readers:
            r.join()
    assert len(seen) > 50
    mixed = [s for s in seen if len(s[0]) != 1 or s[1] != PARAGRAPHS]
    assert not mixed, f"{len(mixed)} of {len(seen)} searches saw a half-changed document: {mixed[:5]}"
    assert index.count({"doc_id": "log"}) == PARAGRAPHS
    assert {p["doc_version"] for p in index.payloads({"doc_id": "log"})} == {"v50"}
    assert index.visibility.unfinished() == []


CRASH = """
import sys
from pathlib import Path
from pipelines.chunk import Chunker
from pipelines.embed import Embedder
from pipelines.index import EdgeIndex
from pipelines.lexical import Bm25Encoder
sys.path.insert(0, {tests!r})
from test_visibility import write
embedder = Embedder()
index = EdgeIndex(Path({path!r}))
write(index, Chunker(embedder.count_tokens, max_tokens=254, overlap=32), embedder, Bm25Encoder(), int(sys.argv[1]))
"""


def _in_a_process_that_may_crash(path: Path, n: int, failpoint: str | None) -> int:
    env = {k: v for k, v in __import__("os").environ.items() if k != "SLUICE_FAILPOINT"}
    if failpoint:
        env["SLUICE_FAILPOINT"] = failpoint
    code = CRASH.format(tests=str(Path(__file__).parent), path=str(path))
    return subprocess.run([sys.executable, "-c", code, str(n)], env=env, timeout=300).returncode


@pytest.mark.parametrize(("failpoint", "survivor"), [("index.before_flip", "v1"), ("index.after_flip", "v2")])
def test_a_crash_mid_change_is_rolled_back_or_finished_when_the_index_opens(tmp_path, failpoint, survivor):
    path = tmp_path / "edge"
    assert _in_a_process_that_may_crash(path, 1, None) == 0
    assert _in_a_process_that_may_crash(path, 2, failpoint) == 70  # died between the writes
    index = EdgeIndex(path)  # opening recovers
    try:
        assert {p["doc_version"] for p in index.payloads({"doc_id": "log"})} == {survivor}
        assert index.count({"doc_id": "log"}) == PARAGRAPHS
        everything = index.shard.count(index.q.CountRequest(filter=None, exact=True))
        assert everything == PARAGRAPHS, "points a reader cannot see were left behind"
        assert index.visibility.unfinished() == []
    finally:
        index.close()
