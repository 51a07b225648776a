"""A file name is personal data: ``Margarethe_Vollstedt_CV.txt`` goes through a real watcher and real
workers; the name shows in no log, no Celery task event and no Redis value except the records its
owner's tools read (docs/file-names.md); its owner still finds and opens it."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from conftest import wait_for
from harness import searchable

NAME = "Margarethe_Vollstedt_CV.txt"
PERSON = ("margarethe", "vollstedt")
TEXT = "Curriculum vitae. Ten years of hydrology work on the lower weir and the eel pass at Kettlebrook."


def _mentions(blob: str) -> bool:
    return any(word in blob.casefold() for word in PERSON)


@contextmanager
def task_events() -> Iterator[list[dict]]:
    """Every Celery event the workers send meanwhile (what Flower shows)."""
    from workers.runtime.app import app

    seen: list[dict] = []
    ready = threading.Event()
    with app.connection() as connection:
        receiver = app.events.Receiver(connection, handlers={"*": seen.append})

        def capture() -> None:
            ready.set()
            receiver.capture(limit=None, timeout=None, wakeup=False)

        thread = threading.Thread(target=capture, daemon=True)
        thread.start()
        ready.wait()
        try:
            yield seen
        finally:
            receiver.should_stop = True
            thread.join(10)


def _redis_values(r) -> Iterator[tuple[str, str, str]]:
    """(key, field, value) of every Redis string, hash, list, set and sorted set."""
    for raw in r.scan_iter("*"):
        key = raw.decode(errors="replace")
        kind = r.type(raw).decode()
        if kind == "string":
            yield key, "", r.get(raw).decode(errors="replace")
        elif kind == "hash":
            for field, value in r.hgetall(raw).items():
                yield key, field.decode(errors="replace"), value.decode(errors="replace")
        elif kind == "list":
            yield from ((key, "", v.decode(errors="replace")) for v in r.lrange(raw, 0, -1))
        elif kind in ("set", "zset"):
            members = r.smembers(raw) if kind == "set" else r.zrange(raw, 0, -1)
            yield from ((key, "", v.decode(errors="replace")) for v in members)


def _documented_place(key: str, field: str, value: str) -> bool:
    """The records docs/file-names.md names: the event (the step that reads the file needs its path),
    the document's status (the owner's `sluice status`, re-index and document view) and the answer to
    the owner's own search, waiting in Celery's result backend to be read."""
    if key.startswith("celery-task-meta-"):
        return '"status": "SUCCESS"' in value and '"retrievers"' in value  # a search's hits
    return key.startswith("sluice:event:") and field == "event" or key.startswith("sluice:doc:") and field == "key"


def test_a_file_named_after_a_person_is_pseudonymised_everywhere_but_its_owners_view(sluice):
    from fastapi.testclient import TestClient

    from workers.client import connect
    from workers.http.api import create_app
    from workers.runtime.config import settings

    inbox = sluice.root / "named-inbox"
    inbox.mkdir()
    with task_events() as events:
        sluice.start("watcher", "watch", str(inbox))
        (inbox / NAME).write_text(TEXT)
        wait_for(lambda: searchable("Kettlebrook"), "the CV to be searchable", timeout_s=120,
                 context=lambda: sluice.log("watcher")[-2000:])
        wait_for(lambda: any(e.get("type") == "task-succeeded" for e in events), "task events")
        wait_for(lambda: connect(settings()).in_flight() == 0, "the follow-ups to end (they keep artifacts until then)")
    sluice.stop("watcher")

    logs = {p: p.read_text(errors="replace") for p in Path(sluice.root).rglob("*.log")}
    assert logs and not [p for p, text in logs.items() if _mentions(text)], [p.name for p in logs]
    assert "<FILE_" in logs[sluice.root / "watcher.log"]
    assert events and not [e for e in events if _mentions(json.dumps(e, default=str))]
    found = [(k, f, v) for k, f, v in _redis_values(connect(settings()).r) if _mentions(k + f + v)]
    assert [k for k, f, v in found if not _documented_place(k, f, v)] == []
    assert {k.split(":")[1] for k, _, _ in found if k.startswith("sluice:")} == {"event", "doc"}

    with TestClient(create_app()) as http:  # the owner (this sluice has no tenants, no keys)
        (hit,) = http.get("/search", params={"q": "Kettlebrook eel pass", "mode": "lexical", "k": 1}).json()["hits"]
        assert hit["key"] == NAME
        document = http.get(f"/documents/{hit['doc_id']}").json()
        assert document["status"]["key"] == NAME and "Kettlebrook" in document["chunks"][0]["text"]


@pytest.mark.parametrize("name", [NAME, "clients/margarethe vollstedt/cv.PDF", "no-extension"])
def test_a_logged_name_is_a_stable_keyed_pseudonym(name, monkeypatch):
    from workers.runtime import config
    from workers.runtime.logsafe import shown

    first = shown(name)
    assert first.startswith("<FILE_") and not _mentions(first) and first == shown(name)
    assert first.endswith({NAME: ">.txt", "no-extension": ">"}.get(name, ">.pdf"))
    monkeypatch.setenv("SLUICE_PSEUDONYM_SECRET", "another secret")
    config.settings.cache_clear()
    try:
        assert shown(name) != first  # keyed: without the secret a pseudonym cannot be tied back to a name
    finally:
        monkeypatch.undo()
        config.settings.cache_clear()
