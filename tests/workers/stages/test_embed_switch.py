"""Configuring another embedder for an existing index never mixes vector spaces and never re-embeds silently.

Real Redis, real Celery workers; the query worker (which embeds and owns the index) is restarted
with ``SLUICE_EMBED_BACKEND=onnx-int8`` between two edits of one document indexed with fp32: the
index's live generation keeps its own embedder (moving it is `sluice generation create`).
"""

from __future__ import annotations


from schemas.search import Mode, SearchRequest

TOPICS = ["sand filters and backwashing", "chlorine residuals in the mains", "reservoir turnover in autumn"]


def _write(folder, edit: str) -> None:
    """Three long paragraphs, several chunks; only the end of the last one carries ``edit``."""
    paragraphs = [f"Section {i}. The plant log records {topic}. " * 14 for i, topic in enumerate(TOPICS)]
    (folder / "plant.txt").write_text("\n\n".join(paragraphs) + f" Revision note: {edit}.")


def test_after_configuring_int8_the_fp32_index_keeps_its_space_and_reuses_its_chunks(fp32_sluice, tmp_path):
    sluice = fp32_sluice
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

    switched = ingest("third")  # the live generation embeds in its own (fp32) space: untouched chunks reused
    assert (switched.chunks_embedded, switched.chunks_reused) == (edited.chunks_embedded, edited.chunks_reused)
    spaces = {p["vectors"] for p in client.ask("document", (client.manifest(None).popitem()[0],))}
    assert spaces == {"all-MiniLM-L6-v2"}
    assert "sluice generation create --embed-backend onnx-int8" in sluice.log("query")
    hits = client.search(SearchRequest(q="how is chlorine kept in the pipes", mode=Mode.dense, k=3))
    assert hits and hits[0].key == "plant.txt" and "chlorine" in hits[0].text
