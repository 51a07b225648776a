"""A parsed document redacted as a whole (pipelines/redacted_document.py), without a broker."""

from __future__ import annotations

import re

import pytest

from pipelines.graph_extract import NER_LABELS
from pipelines.redact import Redactor
from pipelines.redacted_document import redact_document
from schemas.documents import Element, ParsedDocument

TOKEN = re.compile(r"<PERSON_[0-9a-f]{8}>")


@pytest.fixture(scope="module")
def redactor() -> Redactor:
    return Redactor(b"a test secret")


def test_title_headings_and_text_share_one_pseudonym_and_counts_are_the_bodys(redactor):
    doc = ParsedDocument(file_type="md", title="Notes for Margaret Holloway", elements=[
        Element(text="Margaret Holloway inspected the Thornbury sluice gate on Monday.",
                section="Visit of Margaret Holloway"),
        Element(text="Call Margaret Holloway on 020 7946 0958 about the gate.", section="Visit of Margaret Holloway"),
    ])
    out = redact_document(doc, redactor.redact_many, NER_LABELS)
    texts = [out.title or "", *(e.section or "" for e in out.elements), *(e.text for e in out.elements)]
    assert not any("Holloway" in t for t in texts), texts
    assert len({t for text in texts for t in TOKEN.findall(text)}) == 1, texts  # one person, one token everywhere
    assert out.pii_counts.get("PERSON") == 2 and out.pii_counts.get("PHONE_NUMBER") == 1  # headings not counted
    assert [e.section for e in out.elements] == [out.elements[0].section] * 2
    assert all(label in NER_LABELS and label != "PERSON" for _, label in out.entities)


def test_a_document_without_title_or_sections_keeps_them_empty(redactor):
    doc = ParsedDocument(file_type="txt", elements=[Element(text="Reservoir levels rose by 4 cm overnight.")])
    out = redact_document(doc, redactor.redact_many, NER_LABELS)
    assert out.title is None and out.elements[0].section is None
    assert out.elements[0].text == "Reservoir levels rose by 4 cm overnight." and out.pii_counts == {}


def test_a_title_that_is_also_the_first_element_is_redacted_once_and_counted_once(redactor):
    seen: list[str] = []

    def recording(texts: list[str]):  # type: ignore[no-untyped-def]
        seen.extend(texts)
        return redactor.redact_many(texts)

    title = "Report by Margaret Holloway"
    doc = ParsedDocument(file_type="txt", title=title, elements=[
        Element(text=title, section=title), Element(text="Margaret Holloway checked the gate.", section=title),
    ])
    out = redact_document(doc, recording, NER_LABELS)
    assert sorted(seen) == sorted(set(seen)) and title in seen  # each distinct text went to the redactor once
    assert out.title == out.elements[0].text == out.elements[0].section and "Holloway" not in (out.title or "")
    assert out.pii_counts.get("PERSON") == 2  # the element's name still counts; the title's copy does not
