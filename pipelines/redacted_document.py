"""A parsed document redacted as a whole: every element's text, its section headings and its title.

Each distinct text is redacted once (a heading once, not once per element that carries it;
a title that is also its first element's text once), with the same pseudonyms as the body,
so a name in a heading and in the text below it stays one token. Counts are per entity
type, never values; the entities are those the recogniser found and redaction left
intact, for the graph (people never among them).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import TYPE_CHECKING

from schemas.documents import ParsedDocument, RedactedDocument

if TYPE_CHECKING:
    from pipelines.redact import Redaction


def redact_document(doc: ParsedDocument, redact_many: Callable[[list[str]], list[Redaction]],
                    entity_labels: Collection[str]) -> RedactedDocument:
    texts = [e.text for e in doc.elements]
    headings = sorted({e.section for e in doc.elements if e.section} | ({doc.title} if doc.title else set()))
    unique = list(dict.fromkeys(texts + headings))  # a title is often its own first element: redact it once
    done = dict(zip(unique, redact_many(unique)))
    counts: dict[str, int] = {}
    for text in texts:  # per element: a heading's copy of a name is not counted again
        for kind, n in done[text].counts.items():
            counts[kind] = counts.get(kind, 0) + n
    elements = [
        e.model_copy(update={"text": done[e.text].text, "section": done[e.section].text if e.section else None})
        for e in doc.elements
    ]
    entities = list(dict.fromkeys(e for r in done.values() for e in r.entities if e[1] in entity_labels))
    return RedactedDocument(file_type=doc.file_type, title=done[doc.title].text if doc.title else None,
                            elements=elements, pii_counts=counts, entities=entities)
