"""One change observed twice is one event: the id is source, key, content version (and force),
never the action the observer happened to call it."""

from __future__ import annotations

import hashlib

from schemas.events import Action, Event
from workers.ingress.files import folder_events
from workers.sources.folder import folder_source

SHA = hashlib.sha256(b"otters").hexdigest()


def _event(action: Action, **fields: object) -> Event:
    return Event(**{"source": "s3://bucket", "key": "a.txt", "action": action, "version": SHA, **fields})


def test_create_modify_and_reindex_of_the_same_content_are_one_event():
    ids = {_event(a).event_id for a in (Action.create, Action.modify, Action.reindex)}
    assert len(ids) == 1
    assert _event(Action.delete, version="").event_id not in ids  # a delete is another change
    assert _event(Action.reindex, force=True).event_id not in ids  # so is a forced re-index
    assert _event(Action.create, version="0" * 64).event_id not in ids  # and other content


def test_the_cli_and_the_watcher_name_a_file_with_the_same_id(tmp_path):
    (tmp_path / "a.txt").write_bytes(b"otters")
    source = folder_source(tmp_path)
    (cli,) = folder_events(tmp_path, source, {}, "default", paths=[tmp_path / "a.txt"])  # `sluice ingest a.txt`
    (watched,) = folder_events(tmp_path, source, {cli.doc_id: {"key": "a.txt"}}, "default")  # the watcher's reconcile
    assert (cli.action, watched.action) == (Action.create, Action.modify)
    assert cli.event_id == watched.event_id


def test_a_change_seen_again_after_it_finished_is_the_same_event_and_unchanged(eager_state, tmp_path):
    from workers.ingress.admission import Ingress
    from workers.runtime.config import settings

    st = eager_state
    created = _event(Action.create)  # what the S3 watcher submitted and the pipeline indexed
    st.put_event(created)
    st.finish(created.event_id, "done", chunks_embedded=3)
    st.record_indexed(created.doc_id, created.version, key=created.key)
    ingress = Ingress(st, settings())
    for again in (_event(Action.modify), _event(Action.reindex)):  # the notification webhook, a re-index
        assert ingress.submit(again) == (created.event_id, "unchanged")
    assert st.queue_depth("parse") == 0 and st.in_flight() == 0
    info = st.event_info(created.event_id)
    assert info["status"] == "unchanged" and "chunks_embedded" not in info  # this observation embedded nothing


def test_a_file_and_its_bytes_have_one_content_version(tmp_path):
    from schemas.events import content_version
    from workers.ingress.files import file_hash

    (tmp_path / "a.txt").write_bytes(b"otters")
    assert file_hash(tmp_path / "a.txt") == content_version([b"otters"]) == content_version([b"ot", b"ters"]) == SHA
