"""Redact: pseudonymise the parsed document, in the process that parsed it (nothing raw is stored)."""

from __future__ import annotations

from pipelines.graph_extract import NER_LABELS
from pipelines.redacted_document import redact_document
from schemas.events import Event
from workers.runtime import dispatch, resources
from workers.runtime.state import State
from workers.runtime.step import step
from workers.runtime.telemetry import in_steps
from workers.stages.parse import parsed


@step("redact")
def redact(state: State, event: Event) -> None:
    doc = state.kept("parsed", event.event_id)
    if doc is None:  # a redelivered or retried redact message: parse again, nothing raw was kept
        doc = parsed(state, event)
        if doc is None:
            return
    redactor = resources.redactor()
    out = redact_document(doc, lambda texts: in_steps(redactor.redact_many, texts), NER_LABELS)  # long ones report progress
    state.put_json("redacted", event.event_id, out.model_dump_json())
    dispatch.hand_on_next("redact", event.event_id)
