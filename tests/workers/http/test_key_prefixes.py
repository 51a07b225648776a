"""A search's ``prefix`` is a prefix of the document key, in Qdrant Edge and through the server API alike,
for chunk points and summary points; points written before the change still match folder prefixes."""

from __future__ import annotations

import json

import pytest

from pipelines import upsert
from pipelines.diff import plan
from pipelines.index import EdgeIndex, ServerIndex
from pipelines.search import search
from pipelines.summary_index import index_summary
from pipelines.upsert import DocumentMeta, apply_plan, key_prefixes
from schemas.documents import Element, RedactedDocument
from schemas.search import PREFIX_CHARS, Scope, SearchRequest
from schemas.summaries import Summary

DOCS = {  # key -> text; one query finds all of them without a prefix
    "waterfall.txt": "The waterfall spray keeps the fern gully wet below the weir.",
    "water-quality/chlorine.md": "Chlorine residual at the weir outlet stays above the limit.",
    "reports/2024/pump-retrofit.md": "The pump retrofit at the weir finishes in March.",
}
QUERY = "weir waterfall chlorine pump retrofit"


def legacy_prefixes(key: str) -> list[str]:
    """What key_prefixes stored before a prefix was a prefix of the key: folder prefixes only."""
    parts = key.split("/")[:-1]
    return ["/".join(parts[: i + 1]) + "/" for i in range(len(parts))]


@pytest.fixture(params=["edge", "server"])
def index(request, tmp_path, chunker, embedder, bm25):
    idx = EdgeIndex(tmp_path / "edge") if request.param == "edge" else ServerIndex(":memory:", "prefixes")
    for key, text in DOCS.items():
        write(idx, chunker, embedder, bm25, key, text)
    yield idx
    idx.close()


def write(index, chunker, embedder, bm25, key, text):
    doc_id = key.replace("/", "_")
    chunks = chunker.chunk(doc_id, RedactedDocument(file_type="txt", elements=[Element(text=text)]))
    p = plan(chunks, index.chunk_hashes(doc_id), space=embedder.space)
    meta = DocumentMeta(source="folder:/in", key=key, tenant="default", file_type=key.rsplit(".", 1)[-1],
                        version=f"v-{doc_id}", pii_counts={}, vectors=embedder.space)
    apply_plan(index, chunks, p, embedder.embed([c.text for c in chunks]), bm25, meta)
    summary = Summary(doc_id=doc_id, version=meta.version, text=text, kind="extractive", method="first sentence")
    assert index_summary(index, embedder, bm25, summary, doc_id) == "indexed"


def found(index, embedder, bm25, prefix, scope=Scope.chunks):
    req = SearchRequest(q=QUERY, k=20, prefix=prefix, scope=scope)
    return {h.key for h in search(index, embedder, bm25, req)}


@pytest.mark.parametrize("scope", [Scope.chunks, Scope.summaries])
def test_a_prefix_matches_folders_and_partial_names_for_chunks_and_summaries(index, embedder, bm25, scope):
    assert found(index, embedder, bm25, None, scope) == set(DOCS)
    assert found(index, embedder, bm25, "water", scope) == {"waterfall.txt", "water-quality/chlorine.md"}
    assert found(index, embedder, bm25, "waterf", scope) == {"waterfall.txt"}
    assert found(index, embedder, bm25, "reports/2024/", scope) == {"reports/2024/pump-retrofit.md"}
    assert found(index, embedder, bm25, "reports/20", scope) == {"reports/2024/pump-retrofit.md"}
    assert found(index, embedder, bm25, "reports/2024/pump-retrofit.md", scope) == {"reports/2024/pump-retrofit.md"}
    assert found(index, embedder, bm25, "reports/2025/", scope) == set()
    assert found(index, embedder, bm25, "Water", scope) == set()  # keys are case-sensitive, as in S3


def test_a_document_indexed_before_the_change_is_still_found_by_its_folder(index, chunker, embedder, bm25,
                                                                         monkeypatch):
    monkeypatch.setattr(upsert, "key_prefixes", legacy_prefixes)
    write(index, chunker, embedder, bm25, "archive/2019/weir-survey.txt", "The 2019 weir survey counted pumps.")
    monkeypatch.undo()
    for scope in (Scope.chunks, Scope.summaries):
        assert "archive/2019/weir-survey.txt" in found(index, embedder, bm25, "archive/2019/", scope)
        assert "archive/2019/weir-survey.txt" in found(index, embedder, bm25, "archive/", scope)
    # a partial name needs the new payload: writing the document again (a new version, or a forced re-index) adds it
    assert found(index, embedder, bm25, "archive/20") == set()
    write(index, chunker, embedder, bm25, "archive/2019/weir-survey.txt", "The 2019 weir survey counted the pumps.")
    assert found(index, embedder, bm25, "archive/20") == {"archive/2019/weir-survey.txt"}


def test_long_keys_store_bounded_prefixes_and_a_long_partial_prefix_is_refused():
    from pydantic import ValidationError

    key = "a" * 150 + "/deep/" + "b" * 100 + ".txt"
    stored = key_prefixes(key)
    assert len(stored) == PREFIX_CHARS + 2 and all(key.startswith(p) for p in stored)
    assert {"a" * 150 + "/", "a" * 150 + "/deep/"} <= set(stored)
    typical = key_prefixes("reports/2024/q3/pump-retrofit.pdf")  # ~20% of a chunk point's payload
    assert len(typical) == 33 and len(json.dumps(typical)) < 700
    assert SearchRequest(q="x", prefix="a" * 150 + "/deep/").prefix == "a" * 150 + "/deep/"
    with pytest.raises(ValidationError, match="must end with /"):
        SearchRequest(q="x", prefix="a" * 150 + "/de")
