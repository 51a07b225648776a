"""Dead letters as an operator sees them: list, show, retry, purge.

A retry re-reads the document's bytes *now*, so the usual case works: the
file was broken, someone fixed it, the retry indexes the fixed file. The
event is re-submitted through the ingress (admission control applies) with
``force``, because the ingress otherwise refuses content known to fail, and a
follow-up failure (graph, summary) belongs to a document that is already
indexed and would be skipped as unchanged. A letter is removed once its
event is on its way; if that event fails again it leaves a new letter.
"""

from __future__ import annotations

import time
from typing import Any

from pipelines.errors import PermanentError
from schemas.events import Action, Event, content_version
from workers.ingress.admission import Ingress
from workers.runtime.logsafe import escaped
from workers.runtime.state import TERMINAL, State
from workers.sources import reader


def view(st: State, letter: dict[str, Any]) -> dict[str, Any]:
    """A letter plus what became of its document since (a later change may have fixed it already)."""
    doc = st.document(letter["doc_id"]) if letter.get("doc_id") else {}
    if not doc:
        now = "unknown"
    elif doc.get("deleted") == "true":
        now = "deleted"
    elif st.failure(letter["doc_id"]):
        now = "failing"
    else:
        now = "indexed"
    return {**letter, "age_s": round(time.time() - letter["time"], 1), "document_now": now}


def find(st: State, letter_id: str) -> dict[str, Any] | None:
    """A letter by its id or an unambiguous id prefix."""
    exact = st.dead_letter_by_id(letter_id)
    if exact:
        return exact
    matches = [d for d in st.dead_letters() if d["id"].startswith(letter_id)]
    return matches[0] if len(matches) == 1 else None


def _event(st: State, letter: dict[str, Any], max_bytes: int) -> Event:
    """The letter's event as it would be observed now (current bytes), forced."""
    try:
        old = st.event(letter["event_id"])
        source, key, tenant = old.source, old.key, old.tenant
    except KeyError:  # the event expired; the letter carries what is needed
        source, key, tenant = letter.get("source", ""), letter.get("key", ""), letter.get("tenant", "default")
    if not source:
        raise PermanentError("the letter predates retries (no source recorded); re-ingest the file instead")
    data = reader.read(source, key, max_bytes)
    if data is None:
        raise PermanentError(f"{escaped(key)} no longer exists; purge the letter or re-ingest")
    action = Action.modify if st.indexed_version(letter["doc_id"]) else Action.create
    return Event(source=source, key=key, action=action, version=content_version([data]), tenant=tenant,
                 force=True)


def retry(st: State, ingress: Ingress, letter: dict[str, Any], timeout_s: float | None = 30.0) -> dict[str, Any]:
    """Re-submit one letter's document. Returns {"letter", "key", "outcome", "event_id"?, "error"?}."""
    out: dict[str, Any] = {"letter": letter["id"], "key": letter.get("key", "")}
    try:
        event = _event(st, letter, ingress.s.max_document_bytes)
        event_id, outcome = ingress.submit(event, timeout_s=timeout_s)
    except Exception as exc:  # not retried: say why, keep the letter
        return {**out, "outcome": "not retried", "error": str(exc)}
    out.update(event_id=event_id, outcome=outcome)
    if outcome in ("queued", "duplicate"):  # on its way (or already): a new failure leaves a new letter
        st.remove_dead_letters(letter["id"])
    return out


def wait(st: State, results: list[dict[str, Any]], timeout_s: float = 600.0) -> list[dict[str, Any]]:
    """Block until each re-submitted event is finished; adds "status" (and "error") to each result."""
    deadline = time.monotonic() + timeout_s
    pending = [r for r in results if r.get("event_id")]
    while pending and time.monotonic() < deadline:
        for r in list(pending):
            info = st.event_info(r["event_id"])
            if info.get("status") in TERMINAL:
                r["status"] = info["status"]
                if info.get("error"):
                    r["error"] = info["error"]
                again = [d["id"] for d in st.dead_letters() if d["event_id"] == r["event_id"]]
                if again:
                    r["new_letter"] = again[-1]  # it failed again: here is its new letter
                pending.remove(r)
        if pending:
            time.sleep(0.2)
    for r in pending:
        r["status"] = "still running"
    return results
