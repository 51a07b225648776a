"""No unredacted text at rest: personal data planted in a document is found nowhere after ingestion.

A made-up name, e-mail, phone number, card number and street address go through the
real pipeline (graph and summaries on); then every Redis key and value, every file the
private sluice wrote (index shard, graph store, summaries, worker logs) and every task
event Flower would show are searched for each planted value.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from harness import Sluice
from schemas.search import SearchRequest

PLANTED = {
    "name": "Quenella Marpleworth",
    "surname": "Marpleworth",
    "email": "quenella.marpleworth@example.org",
    "phone": "+44 20 7946 0321",
    "card": "4111 1111 1111 1111",
    "street": "17 Brackenfold Lane",
}
TICKET = f"""Service request 4471

Contact: {PLANTED['name']}
Email: {PLANTED['email']}
Phone: {PLANTED['phone']}
Card on file: {PLANTED['card']}
Address: {PLANTED['street']}, Eastwick

The pump at the Eastwick treatment works lost pressure twice this week. {PLANTED['name']}
asked for an engineer visit and a written report on the filter backwash.
"""


def _forms(value: str) -> set[bytes]:
    """The value as written, and as its digits alone (a store might normalise the spacing)."""
    forms = {value.encode()}
    digits = "".join(c for c in value if c.isdigit())
    if len(digits) >= 7:
        forms.add(digits.encode())
    return forms


def _redis_dump(r) -> bytes:
    out = []
    for key in r.scan_iter(count=500):
        out.append(key)
        kind = r.type(key).decode()
        if kind == "string":
            out.append(r.get(key) or b"")
        elif kind == "hash":
            out.extend(b for kv in r.hgetall(key).items() for b in kv)
        elif kind == "list":
            out.extend(r.lrange(key, 0, -1))
        elif kind == "set":
            out.extend(r.smembers(key))
        elif kind == "zset":
            out.extend(m for m, _ in r.zrange(key, 0, -1, withscores=True))
        elif kind == "stream":
            out.extend(b for _, fields in r.xrange(key) for kv in fields.items() for b in kv)
    return b"\n".join(out)


@pytest.fixture(scope="module")
def ingested(tmp_path_factory):
    from workers import client
    from workers.runtime.app import app
    from workers.runtime.config import settings

    root = tmp_path_factory.mktemp("rawtext")
    s = Sluice(root)
    try:
        s.start_workers()
        events: list[dict] = []
        with app.connection() as conn:
            receiver = app.events.Receiver(conn, handlers={"*": events.append})
            listener = threading.Thread(target=receiver.capture, kwargs={"limit": None, "wakeup": True}, daemon=True)
            listener.start()
            inbox = root / "inbox"
            inbox.mkdir()
            (inbox / "request-4471.txt").write_text(TICKET)
            st = client.connect(settings())
            report = client.ingest(st, settings(), client.events_for([inbox], settings()), wait=True)
            while st.in_flight():  # graph and summary follow-ups too
                threading.Event().wait(0.1)
            hits = client.search(SearchRequest(q="engineer visit filter backwash", k=3))
            receiver.should_stop = True
            listener.join(5)
        yield {"sluice": s, "root": root, "report": report, "events": events, "state": st, "hits": hits}
    finally:
        s.close()


def test_the_document_is_indexed_and_found(ingested) -> None:
    report = ingested["report"]
    assert report.failed == [] and report.indexed == 1
    assert ingested["hits"] and "<PERSON_" in ingested["hits"][0].text


@pytest.mark.parametrize("what", sorted(PLANTED))
def test_planted_value_is_nowhere(ingested, what: str) -> None:
    value = PLANTED[what]
    stores = {"redis": _redis_dump(ingested["state"].r), "task events": repr(ingested["events"]).encode()}
    root: Path = ingested["root"]
    for path in root.rglob("*"):
        if path.is_file() and "inbox" not in path.parts:
            stores[str(path.relative_to(root))] = path.read_bytes()
    assert len(stores) > 3 and ingested["events"], "nothing was captured to search"
    for store, content in stores.items():
        for form in _forms(value):
            assert form not in content, f"{what} found in {store}"


def test_a_failure_after_parse_says_why_without_the_text(ingested, monkeypatch) -> None:
    """A document that fails in redaction is dead-lettered with the stage and the error's type:
    the message of a library error, which may quote the text it choked on, stays out."""
    from pipelines.parse import parse_bytes
    from schemas.events import Event
    from workers.runtime import resources, step
    from workers.runtime.app import app

    app.loader.import_default_modules()  # registers every step, as a worker does at start

    class Exploding:
        def redact_many(self, texts: list[str]) -> list:
            raise ValueError(f"cannot handle {texts[0]!r}")

    st = ingested["state"]
    raw = next(st.r.hget(k, "event") for k in st.r.scan_iter("sluice:event:*") if st.r.hget(k, "event"))
    event = Event.model_validate_json(raw)
    monkeypatch.setattr(resources, "redactor", lambda: Exploding())
    st.keep("parsed", event.event_id, parse_bytes(TICKET.encode(), "request-4471.txt"))
    assert step.attempt("redact", st, event, 0, None, None) == "failed"
    letter = [d for d in st.dead_letters() if d["stage"] == "redact"][-1]
    assert letter["error"] == "internal error: ValueError (see the worker log)"
    assert not any(value in repr(st.dead_letters()) for value in PLANTED.values())
