"""Both index implementations behave the same: Qdrant Edge and qdrant-client (in-memory server API)."""

import pytest

from pipelines.diff import plan
from pipelines.index import EdgeIndex, ServerIndex
from pipelines.search import search
from pipelines.upsert import DocumentMeta, apply_plan
from schemas.documents import Element, RedactedDocument
from schemas.search import Mode, SearchRequest

TEXTS = {
    "orders": ["Order ORD-2024-8821 shipped with a cracked pump housing.", "The courier collects the broken unit."],
    "water": ["Sand filters are backwashed every thirty hours.", "Chlorine keeps a residual in the network."],
    "cve": ["CVE-2024-12345 lets a crafted archive overflow the upload parser buffer."],
}


@pytest.fixture(params=["edge", "server"])
def index(request, tmp_path):
    idx = EdgeIndex(tmp_path / "edge") if request.param == "edge" else ServerIndex(":memory:", "t")
    yield idx
    idx.close()


def ingest(index, chunker, embedder, bm25, doc_id, paragraphs, tenant="default", key=None, file_type="txt", space=None):
    doc = RedactedDocument(file_type="txt", elements=[Element(text=t, section=str(i)) for i, t in enumerate(paragraphs)])
    chunks = chunker.chunk(doc_id, doc)
    space = space or embedder.space
    p = plan(chunks, index.chunk_hashes(doc_id), space=space)
    vectors = embedder.embed([chunks[i].text for i in p.embed])
    key = key or f"{doc_id}.txt"
    meta = DocumentMeta(source="folder:/x", key=key, tenant=tenant, file_type=file_type, version=doc_id, pii_counts={},
                        vectors=space)
    apply_plan(index, chunks, p, vectors, bm25, meta)
    return p


def test_chunks_of_another_vector_space_are_embedded_again(index, chunker, embedder, bm25):
    """After a switch of embedding backend, a re-index re-embeds unchanged chunks instead of mixing spaces."""
    first = ingest(index, chunker, embedder, bm25, "water", TEXTS["water"])
    switched = ingest(index, chunker, embedder, bm25, "water", TEXTS["water"], space="all-MiniLM-L6-v2-int8")
    again = ingest(index, chunker, embedder, bm25, "water", TEXTS["water"], space="all-MiniLM-L6-v2-int8")
    assert (len(first.embed), len(switched.embed), switched.reuse, again.embed) == (2, 2, [], [])
    assert {p["vectors"] for p in index.chunk_hashes("water").values()} == {"all-MiniLM-L6-v2-int8"}
    assert index.count() == 2


def ask(index, embedder, bm25, q, mode, **kw):
    return search(index, embedder, bm25, SearchRequest(q=q, k=3, mode=mode, **kw))


def test_modes_find_what_they_should(index, chunker, embedder, bm25):
    for doc_id, paras in TEXTS.items():
        ingest(index, chunker, embedder, bm25, doc_id, paras)
    assert index.count() == 5
    for mode in (Mode.lexical, Mode.hybrid):
        assert ask(index, embedder, bm25, "ORD-2024-8821", mode)[0].doc_id == "orders"
        assert ask(index, embedder, bm25, "CVE-2024-12345", mode)[0].doc_id == "cve"
    top = ask(index, embedder, bm25, "how often are the filter beds cleaned", Mode.dense)[0]
    assert top.doc_id == "water" and "backwashed" in top.text


def test_replay_and_delete(index, chunker, embedder, bm25):
    first = ingest(index, chunker, embedder, bm25, "orders", TEXTS["orders"])
    again = ingest(index, chunker, embedder, bm25, "orders", TEXTS["orders"])
    assert len(first.embed) == 2 and again.embed == [] and index.count() == 2
    edited = ingest(index, chunker, embedder, bm25, "orders", [TEXTS["orders"][0]])
    assert edited.embed == [] and len(edited.delete) == 1 and index.count() == 2 - 1
    index.delete_document("orders")
    assert index.count() == 0
    assert ask(index, embedder, bm25, "ORD-2024-8821", Mode.hybrid) == []


def test_filters_apply_inside_the_search(index, chunker, embedder, bm25):
    ingest(index, chunker, embedder, bm25, "orders", TEXTS["orders"], tenant="a")
    ingest(index, chunker, embedder, bm25, "water", TEXTS["water"], tenant="b")
    hits = ask(index, embedder, bm25, "ORD-2024-8821 pump", Mode.hybrid, tenant="b")
    assert hits and all(h.doc_id == "water" for h in hits)
    assert index.documents()["orders"]["chunks"] == 2


def test_edge_index_survives_restart(tmp_path, chunker, embedder, bm25):
    idx = EdgeIndex(tmp_path / "e")
    ingest(idx, chunker, embedder, bm25, "water", TEXTS["water"])
    idx.close()
    idx = EdgeIndex(tmp_path / "e")
    assert idx.count() == 2 and set(idx.chunk_hashes("water"))
    idx.close()


def test_prefix_type_date_filters_retrievers_and_grouping(index, chunker, embedder, bm25):
    from datetime import datetime, timedelta, timezone

    from pipelines.errors import PermanentError

    ingest(index, chunker, embedder, bm25, "orders", TEXTS["orders"], key="support/2024/orders.txt")
    ingest(index, chunker, embedder, bm25, "water", TEXTS["water"], key="manuals/water.md", file_type="md")
    query = "ORD-2024-8821 pump sand filters"
    assert {h.doc_id for h in ask(index, embedder, bm25, query, Mode.hybrid, prefix="support/2024")} == {"orders"}
    assert {h.doc_id for h in ask(index, embedder, bm25, query, Mode.hybrid, prefix="support/20")} == {"orders"}  # a prefix of the key
    assert {h.doc_id for h in ask(index, embedder, bm25, query, Mode.dense, file_type="md")} == {"water"}
    now = datetime.now(timezone.utc)
    assert ask(index, embedder, bm25, query, Mode.hybrid, created_after=now + timedelta(hours=1)) == []
    assert len(ask(index, embedder, bm25, query, Mode.hybrid, updated_after=now - timedelta(hours=1))) == 3

    top = ask(index, embedder, bm25, "ORD-2024-8821", Mode.hybrid)[0]
    assert top.doc_id == "orders" and top.retrievers == ["dense", "lexical"]
    assert ask(index, embedder, bm25, "ORD-2024-8821", Mode.lexical)[0].retrievers == ["lexical"]

    grouped = search(index, embedder, bm25, SearchRequest(q="pump courier filters", k=5, group_by_document=True))
    assert sorted(h.doc_id for h in grouped) == ["orders", "water"]
    with pytest.raises(PermanentError, match="tenant is required"):
        search(index, embedder, bm25, SearchRequest(q="pump"), tenants=["acme"])


def test_request_validation():
    from pydantic import ValidationError

    for bad in ({"q": ""}, {"q": "   "}, {"q": "x", "k": 0}, {"q": "x", "k": 101}, {"q": "x", "filters": {"secret": "1"}}):
        with pytest.raises(ValidationError):
            SearchRequest(**bad)


def test_summary_point_takes_the_document_vector_unless_a_model_wrote_it(index, chunker, embedder, bm25):
    import numpy as np

    from pipelines.index import Where
    from pipelines.summary_index import index_summary
    from schemas.summaries import Summary

    ingest(index, chunker, embedder, bm25, "water", TEXTS["water"])
    stored = index.chunk_vectors("water")
    assert sorted(p["position"] for p, _ in stored) == [0, 1]
    by_text = {p["text"]: v for p, v in stored}
    for text, vector in zip(TEXTS["water"], embedder.embed(TEXTS["water"])):
        assert float(np.dot(by_text[text], vector)) > 1 - 1e-4  # the stored vectors are the chunks' own

    def summary_point(vector):
        (hit,) = index.query(vector, None, 1, Where(equals={"doc_id": "water"}, kind="summary"))
        return hit

    centroid = np.mean(embedder.embed(TEXTS["water"]), axis=0)
    centroid /= np.linalg.norm(centroid)
    extractive = Summary(doc_id="water", version="water", text=TEXTS["water"][0], kind="extractive", method="textrank")
    assert index_summary(index, embedder, bm25, extractive, "water") == "indexed"
    assert summary_point(centroid).score > 1 - 1e-4  # no model pass: the document's mean chunk vector

    written = "Filters are cleaned on a fixed schedule and the water stays disinfected."
    batch = Summary(doc_id="water", version="water", text=written, kind="batch", method="OpenAI Batch API")
    assert index_summary(index, embedder, bm25, batch, "water") == "indexed"
    hit = summary_point(embedder.embed([written])[0])
    assert hit.score > 1 - 1e-4 and hit.payload["text"] == written  # new wording is embedded on its own
    assert index.count({"doc_id": "water"}, kind="summary") == 1
