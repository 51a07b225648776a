"""Switching the embedding backend to int8 on a running index: no chunk keeps a vector of the other space.

Real Redis, real Celery workers; the query worker (which embeds and owns the index) is restarted
with ``SLUICE_EMBED_BACKEND=onnx-int8`` between two edits of one document.
"""

from __future__ import annotations

import pytest

from harness import Sluice
from schemas.search import Mode, SearchRequest

TOPICS = ["sand filters and backwashing", "chlorine residuals in the mains", "reservoir turnover in autumn"]


@pytest.fixture(scope="module")
def sluice(tmp_path_factory):
    s = Sluice(tmp_path_factory.mktemp("switch"))
    s.start_workers()
    yield s
    s.close()


def _write(folder, edit: str) -> None:
    """Three long paragraphs, several chunks; only the end of the last one carries ``edit``."""
    paragraphs = [f"Section {i}. The plant log records {topic}. " * 14 for i, topic in enumerate(TOPICS)]
    (folder / "plant.txt").write_text("\n\n".join(paragraphs) + f" Revision note: {edit}.")


def test_after_a_switch_to_int8_an_edit_embeds_every_chunk_again(sluice, tmp_path):
    from workers import client
    from workers.runtime.config import settings
    from workers.runtime.flow import EMBEDDED_QUERY_QUEUES

    st = client.connect(settings())
    folder = tmp_path / "docs"
    folder.mkdir()

    def ingest(edit: str) -> client.Report:
        _write(folder, edit)
        report = client.ingest(st, settings(), client.events_for([folder], settings()), wait=True)
        assert report.failed == [] and report.indexed == 1, report
        return report

    chunks = ingest("first").chunks_embedded
    edited = ingest("second")  # same space: the untouched chunks are reused
    assert edited.chunks_reused >= 2 and edited.chunks_embedded + edited.chunks_reused == chunks

    sluice.stop("query")
    sluice.env["SLUICE_EMBED_BACKEND"] = "onnx-int8"
    sluice.start("query", "query-worker", "--name", "query@test", "--queues", ",".join(EMBEDDED_QUERY_QUEUES))
    sluice.wait_for_workers({"query@test"})

    switched = ingest("third")  # the untouched chunks hold fp32 vectors: embedded again, not reused
    assert (switched.chunks_embedded, switched.chunks_reused) == (chunks, 0)
    again = ingest("fourth")  # int8 chunks are reused by the int8 embedder
    assert (again.chunks_embedded, again.chunks_reused) == (edited.chunks_embedded, edited.chunks_reused)
    hits = client.search(SearchRequest(q="how is chlorine kept in the pipes", mode=Mode.dense, k=3))
    assert hits and hits[0].key == "plant.txt" and "chlorine" in hits[0].text
