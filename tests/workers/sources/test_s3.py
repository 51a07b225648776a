"""S3-compatible buckets over real HTTP: moto's S3 server on loopback, a private
Redis, real Celery workers, ``sluice watch s3://bucket/prefix`` as a user runs it,
and signed bucket notifications through the webhook.
"""

from __future__ import annotations

import json
import socket
import time
from typing import Any
from urllib.parse import quote_plus

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from conftest import wait_for
from harness import Sluice
from pipelines.errors import mib
from schemas.events import document_id
from schemas.search import Mode, SearchRequest
from workers.http.signing import sign
from workers.runtime.state import TERMINAL
from workers.sources.s3 import key_problem, split_url

SECRET = "bucket-hook-secret"
LIMIT = 100_000  # max document bytes in this sluice


@pytest.mark.parametrize(
    ("key", "reason"),
    [("inbox/../../etc/passwd", "'..'"), ("/etc/passwd", "absolute"), ("C:\\boot.ini", "absolute"),
     ("a\\..\\b", "'..'"), ("inbox/bell\x07.txt", "control"), ("inbox/evil\u202etxt.exe", "bidirectional"),
     ("k" * 1025, "1025 bytes"), ("é" * 513, "1026 bytes"), ("inbox/\udcff.txt", "UTF-8"), ("", "empty")],
)
def test_unsafe_keys_are_refused_with_a_reason(key, reason):
    assert reason in (key_problem(key) or ""), key_problem(key)


def test_ordinary_keys_pass():
    for key in ("inbox/report.pdf", "inbox/my notes/q&a (1).md", "ünïcödé/日本語.txt", "a..b/c.txt", "x" * 1024):
        assert key_problem(key) is None, key
    assert split_url("s3://docs/inbox/") == ("docs", "inbox/") and split_url("s3://docs") == ("docs", "")
    for bad in ("s3://Bad_Bucket/x", "docs/inbox", "s3://docs/../x"):
        with pytest.raises(ValueError):
            split_url(bad)


@pytest.fixture(scope="module")
def endpoint():
    from moto.server import ThreadedMotoServer

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture(scope="module")
def sluice(tmp_path_factory, endpoint):
    s = Sluice(
        tmp_path_factory.mktemp("s3"), s3_endpoint_url=endpoint, s3_access_key_id="testing",
        s3_secret_access_key="testing", s3_poll_interval_s="0.3", webhook_secret=SECRET,
        max_document_bytes=str(LIMIT),
    )
    try:
        s.start_workers()
    except BaseException:
        s.close()  # never leave workers behind
        raise
    yield s
    s.close()


@pytest.fixture(scope="module")
def st(sluice):
    from workers import client
    from workers.runtime.config import settings

    return client.connect(settings())


@pytest.fixture(scope="module")
def bucket(sluice):
    from workers.runtime.config import settings
    from workers.sources import s3

    c = s3.client(settings())
    c.create_bucket(Bucket="docs")
    c.create_bucket(Bucket="hooks")
    return c


def keys_found(word: str) -> set[str]:
    from workers import client

    return {h.key for h in client.search(SearchRequest(q=word, mode=Mode.lexical, k=20)) if word in h.text}


def indexed(source: str) -> dict[str, str]:
    from workers import client

    return {i["key"]: i["version"] for i in client.manifest(source).values()}


def start_watcher(sluice: Sluice, url: str) -> None:
    log = sluice.root / "watch-s3.log"
    before = log.read_text().count("reconciled") if log.exists() else 0
    sluice.start("watch-s3", "watch", url)
    wait_for(lambda: log.exists() and log.read_text().count("reconciled") > before
             or sluice.procs["watch-s3"].poll() is not None, "the watcher to reconcile")
    assert sluice.procs["watch-s3"].poll() is None, sluice.log("watch-s3")[-3000:]


def test_watched_bucket_follows_create_overwrite_delete_and_catches_up_on_restart(sluice, st, bucket):
    put = bucket.put_object
    put(Bucket="docs", Key="inbox/heron.txt", Body=b"The grey heron waits by the weir. Token heronweir.")
    put(Bucket="docs", Key="inbox/../../etc/passwd", Body=b"root:x:0:0 Token passwdleak.")
    put(Bucket="docs", Key="inbox/huge.txt", Body=b"huge " * (LIMIT // 4))
    put(Bucket="docs", Key="outside/not-watched.txt", Body=b"Token outsideprefix.")
    start_watcher(sluice, "s3://docs/inbox/")

    wait_for(lambda: keys_found("heronweir") == {"inbox/heron.txt"}, "reconcile to index heron.txt")
    letters = wait_for(lambda: [d for d in st.dead_letters() if d["key"] == "inbox/huge.txt"], "huge.txt dead letter")
    assert f"over the {mib(LIMIT)} limit" in letters[0]["error"]
    log = sluice.log("watch-s3")
    assert "refused object key <FILE_" in log and "'..' path segment" in log and "passwd" not in log  # names pseudonymised
    assert set(indexed("s3://docs")) == {"inbox/heron.txt"}

    put(Bucket="docs", Key="inbox/kestrel.txt", Body=b"A kestrel hovers over the verge. Token kestrelhover.")
    wait_for(lambda: keys_found("kestrelhover") == {"inbox/kestrel.txt"}, "a new object to be indexed")

    put(Bucket="docs", Key="inbox/heron.txt", Body=b"The heron has moved to the estuary. Token heronestuary.")
    wait_for(lambda: keys_found("heronestuary") == {"inbox/heron.txt"}, "an overwritten object to be re-indexed")
    assert keys_found("heronweir") == set()

    bucket.delete_object(Bucket="docs", Key="inbox/kestrel.txt")
    wait_for(lambda: "inbox/kestrel.txt" not in indexed("s3://docs"), "a deleted object to leave the index")
    assert keys_found("kestrelhover") == set()

    sluice.stop("watch-s3")  # changes while nobody watches
    bucket.delete_object(Bucket="docs", Key="inbox/heron.txt")
    put(Bucket="docs", Key="inbox/osprey.txt", Body=b"An osprey dives for trout. Token ospreytrout.")
    start_watcher(sluice, "s3://docs/inbox/")
    wait_for(lambda: set(indexed("s3://docs")) == {"inbox/osprey.txt"}, "the restarted watcher to catch up")
    assert keys_found("ospreytrout") == {"inbox/osprey.txt"} and keys_found("passwdleak") == set()
    sluice.stop("watch-s3")


def _notify(http: TestClient, records: list[dict[str, Any]]) -> dict[str, Any]:
    raw = json.dumps({"Records": records}).encode()
    stamp = str(int(time.time()))
    r = http.post("/webhooks/s3", content=raw,
                  headers={"X-Sluice-Timestamp": stamp, "X-Sluice-Signature": sign(SECRET.encode(), stamp, raw)})
    assert r.status_code == 202, r.text
    return r.json()


def _record(name: str, key: str, sequencer: str, etag: str | None = None) -> dict[str, Any]:
    """A notification record as S3 sends it (the key URL-encoded, '+' for spaces)."""
    obj = {"key": quote_plus(key, safe="/"), "sequencer": sequencer, **({"eTag": etag} if etag else {})}
    return {"eventVersion": "2.1", "eventSource": "aws:s3", "eventName": name,
            "s3": {"s3SchemaVersion": "1.0", "bucket": {"name": "hooks"}, "object": obj}}


def _settled(st, answer: dict[str, Any]) -> None:
    for event_id in answer["event_ids"]:
        wait_for(lambda e=event_id: st.event_info(e).get("status") in TERMINAL, f"event {event_id}")


def test_bucket_notifications_create_overwrite_delete_in_sequencer_order(st, bucket):
    from workers.http.webhooks import webhook_router
    from workers.runtime.config import settings

    api = FastAPI()
    api.include_router(webhook_router(st, settings(), documents=dict))
    http = TestClient(api)
    key = "field notes/q&a 1.txt"
    doc_id = document_id("s3://hooks", key)

    assert http.post("/webhooks/s3", json={"Records": []}).status_code == 401  # same authentication

    v1 = bucket.put_object(Bucket="hooks", Key=key, Body=b"Curlews call over the marsh. Token curlewmarsh.")
    created = _notify(http, [_record("ObjectCreated:Put", key, "0055", v1["ETag"].strip('"'))])
    assert [r["action"] for r in created["records"]] == ["create"]
    _settled(st, created)
    assert keys_found("curlewmarsh") == {key}

    v2 = bucket.put_object(Bucket="hooks", Key=key, Body=b"The curlews left for the coast. Token curlewcoast.")
    overwritten = _notify(http, [_record("ObjectCreated:Put", key, "0066", v2["ETag"].strip('"'))])
    _settled(st, overwritten)
    assert keys_found("curlewcoast") == {key} and keys_found("curlewmarsh") == set()

    late = _notify(http, [_record("ObjectCreated:Put", key, "0055", v1["ETag"].strip('"'))])  # redelivered
    assert late["event_ids"] == [] and late["records"][0]["outcome"] == "stale"

    # Overwritten (seq 77), then deleted (seq 88): the delete's notification arrives first.
    bucket.put_object(Bucket="hooks", Key=key, Body=b"Token curlewlate.")
    bucket.delete_object(Bucket="hooks", Key=key)
    deleted = _notify(http, [_record("ObjectRemoved:Delete", key, "0088")])
    _settled(st, deleted)
    assert st.event_info(deleted["event_ids"][0])["status"] == "deleted"
    stale = _notify(http, [_record("ObjectCreated:Put", key, "77")])  # shorter hex, still older
    assert stale["records"][0]["outcome"] == "stale"
    assert doc_id not in {document_id("s3://hooks", k) for k in indexed("s3://hooks")}
    assert keys_found("curlewcoast") == set() and keys_found("curlewlate") == set()

    # One batch reporting a key twice: only its newest change counts; unsafe keys are refused.
    bucket.put_object(Bucket="hooks", Key="b.txt", Body=b"Token batchnewest.")
    batch = _notify(http, [_record("ObjectCreated:Put", "b.txt", "00A1"), _record("ObjectCreated:Copy", "b.txt", "009F"),
                           _record("ObjectCreated:Put", "../../etc/passwd", "0001"),
                           _record("s3:ObjectAccessed:Get", "b.txt", "00A2")])
    outcomes = {(r["key"], r["outcome"]) for r in batch["records"]}
    assert ("b.txt", "queued") in outcomes and len(batch["event_ids"]) == 1
    assert {r["outcome"] for r in batch["records"] if r["key"] != "b.txt"} == {"refused"}
    assert any(r["outcome"] == "ignored" for r in batch["records"])
    _settled(st, batch)
    assert keys_found("batchnewest") == {"b.txt"}


def _signed(http: TestClient, body: dict[str, Any]) -> Any:
    raw = json.dumps(body).encode()
    stamp = str(int(time.time()))
    return http.post("/webhooks/reindex", content=raw,
                     headers={"X-Sluice-Timestamp": stamp, "X-Sluice-Signature": sign(SECRET.encode(), stamp, raw)})


def test_reindex_webhook_rereads_objects_from_the_bucket(st, bucket):
    """Re-index through the real index manifest (every source) and real S3 reads."""
    from workers.http.webhooks import webhook_router
    from workers.runtime.config import settings

    api = FastAPI()
    api.include_router(webhook_router(st, settings()))  # documents: the query worker's manifest
    http = TestClient(api)
    key = "reindex/r.txt"
    etag = bucket.put_object(Bucket="hooks", Key=key, Body=b"Token dunlinflock.")["ETag"].strip('"')
    _settled(st, _notify(http, [_record("ObjectCreated:Put", key, "01", etag)]))

    forced = _signed(http, {"scope": "prefix", "prefix": "reindex/", "force": True})
    assert forced.status_code == 202, forced.text
    job = wait_for(lambda: (j := st.job(forced.json()["job_id"])) and j["finished_at"] and j, "the prefix job")
    assert (job["status"], job["total"], job["outcomes"]) == ("done", 1, {"queued": 1}), job

    doc_id = document_id("s3://hooks", key)
    assert _signed(http, {"scope": "document", "document_id": doc_id}).json()["outcome"] in ("unchanged", "duplicate")
    bucket.put_object(Bucket="hooks", Key=key, Body=b"Token dunlinroost.")  # changed, nobody told us
    changed = _signed(http, {"scope": "document", "document_id": doc_id}).json()
    assert changed["outcome"] == "queued"
    _settled(st, changed)
    assert keys_found("dunlinroost") == {key} and keys_found("dunlinflock") == set()
