"""Generations without a broker: the registry, copying a document into another space, the self-check gate."""

from __future__ import annotations

import numpy as np

from pipelines.diff import plan
from pipelines.generations import Registry, copy_documents, judged_check, self_check, started
from pipelines.index import EdgeIndex, IndexPoint
from pipelines.records import FileRecord
from pipelines.upsert import DocumentMeta, apply_plan
from schemas.documents import Element, RedactedDocument

PARAS = ["Sand filters are backwashed every thirty hours.", "Chlorine keeps a residual in the network.",
         "The brackwater sluice opens at high tide."]


def _write(index, chunker, embedder, bm25, doc_id, paragraphs, version):  # type: ignore[no-untyped-def]
    doc = RedactedDocument(file_type="txt", elements=[Element(text=t, section=str(i)) for i, t in enumerate(paragraphs)])
    chunks = chunker.chunk(doc_id, doc)
    p = plan(chunks, index.chunk_hashes(doc_id), space=embedder.space)
    meta = DocumentMeta(source="folder:/x", key=f"{doc_id}.txt", tenant="default", file_type="txt", version=version,
                        pii_counts={}, vectors=embedder.space)
    apply_plan(index, chunks, p, embedder.embed([chunks[i].text for i in p.embed]), bm25, meta)


def test_the_registry_names_generations_and_survives_a_reload(tmp_path):
    record = FileRecord(tmp_path / "generations.json")
    registry = Registry.model_validate({"live": "g1", "generations": {"g1": {
        "name": "g1", "backend": "onnx", "space": "s1", "location": "/x/g1", "chunk_tokens": 256, "chunk_overlap": 32,
        "created_at": 0.0}}})
    made = started(registry, "onnx-int8", "s2", str(tmp_path / "{name}"), 256, 32)
    registry.save(record)
    again = Registry.load(record)
    assert again is not None and made.name == "g2" and again.generations["g2"].location == str(tmp_path / "g2")
    assert again.generations["g2"].status == "building" and [g.name for g in again.kept()] == ["g1", "g2"]


def test_copy_writes_the_live_version_with_new_vectors_and_only_when_needed(tmp_path, chunker, embedder, bm25):
    live, target = EdgeIndex(tmp_path / "live"), EdgeIndex(tmp_path / "target")
    try:
        _write(live, chunker, embedder, bm25, "water", PARAS, "v1")
        calls: list[int] = []

        def embed(texts: list[str]) -> np.ndarray:
            calls.append(len(texts))
            return -embedder.embed(texts)  # another space: same texts, other vectors

        assert copy_documents(live, target, ["water"], embed, bm25, "other-space") == len(PARAS)
        copied = {p["chunk_hash"]: p for p in target.payloads({"doc_id": "water"})}
        original = {p["chunk_hash"]: p for p in live.payloads({"doc_id": "water"})}
        assert copied.keys() == original.keys()
        assert all(copied[h]["text"] == original[h]["text"] and copied[h]["vectors"] == "other-space" for h in copied)
        assert copy_documents(live, target, ["water"], embed, bm25, "other-space") == 0 and calls == [len(PARAS)]
        _write(live, chunker, embedder, bm25, "water", PARAS[:2] + ["The weir was raised."], "v2")
        assert copy_documents(live, target, ["water"], embed, bm25, "other-space") == len(PARAS)
        assert {p["doc_version"] for p in target.payloads({"doc_id": "water"})} == {"v2"}
        live.delete_document("water")
        assert copy_documents(live, target, ["water"], embed, bm25, "other-space") == 0
        assert target.count() == 0
    finally:
        live.close()
        target.close()


def test_the_self_check_finds_each_chunk_by_its_own_text(tmp_path, chunker, embedder, bm25):
    index = EdgeIndex(tmp_path / "live")
    try:
        _write(index, chunker, embedder, bm25, "water", PARAS, "v1")
        probes = list(index.payloads())
        same, noise = self_check([(index, embedder.embed), (index, lambda t: np.random.default_rng(1).normal(
            size=(len(t), 384)).astype(np.float32))], probes, bm25, k=1)
        assert same == 1.0 and noise <= same
    finally:
        index.close()


def test_the_judged_gate_scores_each_generation_on_the_users_queries(tmp_path, chunker, embedder, bm25):
    index, empty = EdgeIndex(tmp_path / "live"), EdgeIndex(tmp_path / "empty")
    try:
        for i, text in enumerate(PARAS):
            _write(index, chunker, embedder, bm25, f"d{i}", [text], "v1")  # key d{i}.txt: corpus id d{i}
        queries = {"q0": "how often are sand filters backwashed", "q2": "when does the sluice open"}
        qrels = {"q0": {"d0": 1.0}, "q2": {"d2": 1.0}}
        good, missing = judged_check([(index, embedder.embed), (empty, embedder.embed)], queries, qrels, bm25)
        assert (good, missing) == (1.0, 0.0)
    finally:
        index.close()
        empty.close()


def test_a_copy_cut_short_between_its_writes_is_mended_by_the_next(tmp_path, chunker, embedder, bm25):
    """A build writes a generation no search reads yet in one upsert, then deletes what that replaced (no
    journal): a crash between the two leaves the old version's points beside the new ones (a chunk whose
    text did not change has the same hash in both); the resumed build's copy leaves exactly the live version."""
    live, target = EdgeIndex(tmp_path / "live"), EdgeIndex(tmp_path / "target")
    try:
        _write(live, chunker, embedder, bm25, "water", PARAS, "v1")
        copy_documents(live, target, ["water"], embedder.embed, bm25, embedder.space)
        stale = {(p["chunk_hash"], p["doc_version"]) for p in target.payloads({"doc_id": "water"})}
        _write(live, chunker, embedder, bm25, "water", PARAS[:2] + ["The weir was raised."], "v2")
        new = sorted(live.payloads({"doc_id": "water"}), key=lambda p: p["position"])
        target.upsert([IndexPoint("water", p["chunk_hash"], v, bm25.document(p["text"]), p, "v2")
                       for p, v in zip(new, embedder.embed([p["text"] for p in new]))])  # the crash: no delete
        assert target.count() == len(stale) + len(new)
        assert copy_documents(live, target, ["water"], embedder.embed, bm25, embedder.space) == len(new)
        assert target.point_ids("water") == live.point_ids("water")
        assert {p["doc_version"] for p in target.payloads({"doc_id": "water"})} == {"v2"}
        assert not (tmp_path / "target.changes.json").exists(), "the build journalled a change nobody reads"
    finally:
        live.close()
        target.close()
