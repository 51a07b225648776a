"""Redact: pseudonymise the parsed document, in the process that parsed it (nothing raw is stored)."""

from __future__ import annotations

from pipelines.graph_extract import NER_LABELS
from schemas.documents import RedactedDocument
from schemas.events import Event
from workers.runtime import dispatch, resources
from workers.runtime.state import State
from workers.runtime.step import step
from workers.runtime.telemetry import in_steps
from workers.stages.parse import parsed


@step("redact")
def redact(st: State, event: Event) -> None:
    doc = st.kept("parsed", event.event_id)
    if doc is None:  # a redelivered or retried redact message: parse again, nothing raw was kept
        doc = parsed(st, event)
        if doc is None:
            return
    texts = [e.text for e in doc.elements]
    headings = sorted({e.section for e in doc.elements if e.section} | ({doc.title} if doc.title else set()))
    done = in_steps(resources.redactor().redact_many, texts + headings)  # long documents report progress
    clean = {h: r.text for h, r in zip(headings, done[len(texts):])}
    counts: dict[str, int] = {}
    for r in done[: len(texts)]:
        for kind, n in r.counts.items():
            counts[kind] = counts.get(kind, 0) + n
    elements = [
        e.model_copy(update={"text": r.text, "section": clean.get(e.section) if e.section else None})
        for e, r in zip(doc.elements, done)
    ]
    title = clean.get(doc.title) if doc.title else None
    entities = list(dict.fromkeys(e for r in done for e in r.entities if e[1] in NER_LABELS))
    out = RedactedDocument(file_type=doc.file_type, title=title, elements=elements, pii_counts=counts, entities=entities)
    st.put_json("redacted", event.event_id, out.model_dump_json())
    dispatch.hand_on_next("redact", event.event_id)
