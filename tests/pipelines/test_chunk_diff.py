from pipelines.chunk import chunk_hash
from pipelines.diff import plan
from pipelines.embed import SPACE
from schemas.documents import Element, RedactedDocument


def doc(*elements: Element) -> RedactedDocument:
    return RedactedDocument(file_type="md", title="T", elements=list(elements))


def test_no_chunk_exceeds_the_embedder_window(chunker, embedder):
    long_para = " ".join(f"Sentence number {i} talks about reservoirs and filtration beds." for i in range(200))
    chunks = chunker.chunk("d1", doc(Element(text=long_para, section="Intro")))
    assert len(chunks) > 5
    assert max(embedder.count_tokens([c.text for c in chunks])) <= 254
    # overlap: consecutive windows share a sentence
    assert chunks[0].text.split(". ")[-1][:30] in chunks[1].text


def test_one_huge_sentence_is_windowed(chunker, embedder):
    chunks = chunker.chunk("d1", doc(Element(text="word " * 3000)))
    assert max(embedder.count_tokens([c.text for c in chunks])) <= 254
    assert sum(len(c.text.split()) for c in chunks) >= 3000  # nothing dropped (overlap may repeat)


def test_sections_start_new_chunks_and_carry_metadata(chunker):
    chunks = chunker.chunk(
        "d1",
        doc(
            Element(text="Alpha paragraph.", section="A", page=1),
            Element(text="Second alpha paragraph.", section="A", page=1),
            Element(text="Beta paragraph.", section="B", page=2),
        ),
    )
    assert [(c.section, c.page, c.position) for c in chunks] == [("A", 1, 0), ("B", 2, 1)]
    assert "Second alpha" in chunks[0].text and chunks[0].title == "T"
    assert chunks[1].hash == chunk_hash("Beta paragraph.")


def test_hash_ignores_cosmetic_whitespace():
    assert chunk_hash("a  b\n c") == chunk_hash("a b c")
    assert chunk_hash("a b c") != chunk_hash("a b d")


def test_plan_embeds_only_new_and_deletes_vanished(chunker):
    before = chunker.chunk("d", doc(Element(text="one", section="1"), Element(text="two", section="2")))
    after = chunker.chunk(
        "d", doc(Element(text="one", section="1"), Element(text="two, edited", section="2"), Element(text="three", section="3"))
    )
    p = plan(after, {c.hash: {"vectors": SPACE} for c in before})
    assert p.reuse == [0]
    assert p.embed == [1, 2]
    assert p.delete == [before[1].hash]
    assert plan(after, {c.hash: {"vectors": SPACE} for c in after}).embed == []
    assert plan(after, {c.hash: {"vectors": SPACE} for c in after}, force=True).embed == [0, 1, 2]


def test_headings_stay_with_the_text_they_introduce(chunker):
    chunks = chunker.chunk(
        "d1",
        doc(
            Element(text="Handbook", kind="title", section="Handbook"),
            Element(text="Filtration", kind="title", section="Filtration"),
            Element(text="Sand beds are backwashed daily.", section="Filtration"),
            Element(text="Disinfection", kind="title", section="Disinfection"),
            Element(text="Chlorine is dosed last.", section="Disinfection"),
        ),
    )
    assert [c.text for c in chunks] == [
        "Handbook\nFiltration\nSand beds are backwashed daily.",
        "Disinfection\nChlorine is dosed last.",
    ]
    assert [c.section for c in chunks] == ["Filtration", "Disinfection"]


def test_a_version_is_unchanged_only_when_nothing_moves_and_every_chunk_carries_it(chunker):
    from pipelines.diff import unchanged
    from pipelines.upsert import plan_counts

    doc = RedactedDocument(file_type="txt", elements=[Element(text="One paragraph about the weir.")])
    chunks = chunker.chunk("d", doc)
    indexed = {c.hash: {"vectors": SPACE, "doc_version": "v1"} for c in chunks}
    same = plan(chunks, indexed, space=SPACE)
    assert unchanged(same, indexed, "v1")
    assert not unchanged(same, indexed, "v2")  # same chunks, new version: payloads are rewritten
    grown = plan(chunks, {**indexed, "gone": {"vectors": SPACE, "doc_version": "v1"}}, space=SPACE)
    assert not unchanged(grown, indexed, "v1")
    assert plan_counts(chunks, grown) == {"chunks": len(chunks), "chunks_embedded": 0, "chunks_reused": len(chunks),
                                          "chunks_deleted": 1}
