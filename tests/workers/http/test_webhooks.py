"""Signed re-index webhooks: the signature scheme, idempotent deliveries, limits,
admission control and paced, cancellable bulk jobs.

A private Redis and no pipeline workers: what the webhook admits is read straight
off the parse queue and the event store, and a full pipeline stays full until
the test makes room.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from harness import ROOT, Sluice
from schemas.events import document_id
from workers.http.signing import sign
from workers.sources.folder import folder_source

SECRET = "correct horse battery staple"
BOUND = 4  # max in flight; a bulk job may use half of it


@pytest.fixture(scope="module")
def sluice(tmp_path_factory):
    s = Sluice(tmp_path_factory.mktemp("hooks"), webhook_secret=SECRET, max_in_flight=str(BOUND))
    yield s
    s.close()


@pytest.fixture
def st(sluice):
    from workers import client
    from workers.runtime.config import settings

    state = client.connect(settings())
    state.r.flushdb()
    return state


@pytest.fixture
def folder(tmp_path) -> Path:
    root = tmp_path / "docs"
    for sub in ("bulk", "other"):
        (root / sub).mkdir(parents=True)
    for i in range(12):
        (root / "bulk" / f"note-{i:02}.txt").write_text(f"Bulk note {i} about lapwings.")
    (root / "other" / "a.md").write_text("# Plovers\n\nRinged plovers nest on shingle.")
    (root / "other" / "b.md").write_text("# Terns\n\nLittle terns fish the shallows.")
    return root


def _manifest(root: Path) -> dict[str, dict[str, Any]]:
    """What a query worker would say is indexed: every file in the folder."""
    source = folder_source(root)
    return {
        document_id(source, p.relative_to(root).as_posix()): {
            "key": p.relative_to(root).as_posix(), "source": source, "version": "old", "chunks": 1,
        }
        for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.fixture
def http(st, folder):
    from workers.http.webhooks import webhook_router
    from workers.runtime.config import settings

    listing = _manifest(folder)  # taken before tests delete files, like an index that lags
    api = FastAPI()
    api.include_router(webhook_router(st, settings(), documents=lambda: listing))
    return TestClient(api)


def post(http: TestClient, body: Any, *, secret: str = SECRET, ts: float | None = None, delivery: str | None = None,
         path: str = "/webhooks/reindex", send: bytes | None = None) -> Any:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    stamp = str(int(time.time() if ts is None else ts))
    headers = {"Content-Type": "application/json", "X-Sluice-Timestamp": stamp,
               "X-Sluice-Signature": sign(secret.encode(), stamp, raw)}
    if delivery:
        headers["X-Sluice-Delivery"] = delivery
    return http.post(path, content=raw if send is None else send, headers=headers)


def _doc(st, folder: Path, key: str, version: str | None = None) -> str:
    """Mark a document indexed, as the pipeline's upsert would."""
    source = folder_source(folder)
    doc_id = document_id(source, key)
    st.record_indexed(doc_id, version or "0" * 64, key=key, source=source, tenant="default")
    return doc_id


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_signed_document_reindex_is_admitted_in_milliseconds(st, http, folder):
    doc_id = _doc(st, folder, "other/a.md")
    started = time.perf_counter()
    r = post(http, {"scope": "document", "document_id": doc_id})
    took = time.perf_counter() - started
    assert r.status_code == 202, r.text
    assert took < 0.5, took
    (event_id,) = r.json()["event_ids"]
    event = st.event(event_id)
    assert (event.action.value, event.key, event.version) == ("reindex", "other/a.md", _sha(folder / "other/a.md"))
    assert st.queue_depth("parse") == 1 and st.in_flight() == 1


def test_unchanged_document_needs_force(st, http, folder):
    doc_id = _doc(st, folder, "other/b.md", version=_sha(folder / "other/b.md"))
    r = post(http, {"scope": "document", "document_id": doc_id})
    assert (r.status_code, r.json()["outcome"], st.queue_depth("parse")) == (202, "unchanged", 0)
    r = post(http, {"scope": "document", "document_id": doc_id, "force": True})
    assert (r.status_code, r.json()["outcome"], st.queue_depth("parse")) == (202, "queued", 1)
    assert st.event(r.json()["event_ids"][0]).force


def test_document_redis_forgot_is_found_in_the_index_and_unknown_is_404(st, http, folder):
    known = document_id(folder_source(folder), "other/a.md")  # only the (fake) index knows it
    assert post(http, {"scope": "document", "document_id": known}).json()["outcome"] == "queued"
    assert post(http, {"scope": "document", "document_id": "f" * 32}).status_code == 404


@pytest.mark.parametrize(
    "case",
    ["wrong secret", "stale", "from the future", "tampered body", "missing signature", "body signed without timestamp"],
)
def test_bad_signatures_are_refused_and_enqueue_nothing(st, http, folder, case):
    doc_id = _doc(st, folder, "other/a.md")
    body = {"scope": "document", "document_id": doc_id}
    if case == "wrong secret":
        r = post(http, body, secret="not the secret")
    elif case == "stale":
        r = post(http, body, ts=time.time() - 301)
    elif case == "from the future":
        r = post(http, body, ts=time.time() + 301)
    elif case == "tampered body":
        r = post(http, body, send=json.dumps({**body, "force": True}).encode())
    else:
        raw = json.dumps(body).encode()
        headers = {"X-Sluice-Timestamp": str(int(time.time()))}
        if case == "body signed without timestamp":
            headers["X-Sluice-Signature"] = "sha256=" + hashlib.sha256(SECRET.encode() + raw).hexdigest()
        r = http.post("/webhooks/reindex", content=raw, headers=headers)
    assert r.status_code == 401, r.text
    assert st.queue_depth("parse") == 0 and st.in_flight() == 0


def test_replayed_delivery_returns_the_same_answer_and_enqueues_nothing(st, http, folder):
    doc_id = _doc(st, folder, "other/a.md")
    body = {"scope": "document", "document_id": doc_id}
    first = post(http, body, delivery="dlv-0001")
    (folder / "other/a.md").write_text("# Plovers\n\nChanged since: a new event would have a new id.")
    again = post(http, body, delivery="dlv-0001")
    assert (first.status_code, again.status_code) == (202, 202)
    assert again.json() == first.json() and again.headers.get("X-Sluice-Replayed") == "true"
    assert st.queue_depth("parse") == 1
    other = post(http, {**body, "force": True}, delivery="dlv-0001")  # same id, different request
    assert other.status_code == 409 and st.queue_depth("parse") == 1


def test_bodies_over_the_limit_are_refused_before_parsing(st, http):
    from workers.runtime.config import settings

    big = b'{"scope": "all", "pad": "' + b"x" * settings().webhook_max_body_bytes + b'"}'
    assert post(http, big).status_code == 413  # declared by Content-Length
    stamp = str(int(time.time()))
    chunks = (big[i:i + 65536] for i in range(0, len(big), 65536))  # chunked: no Content-Length at all
    r = http.post("/webhooks/reindex", content=chunks,
                  headers={"X-Sluice-Timestamp": stamp, "X-Sluice-Signature": sign(SECRET.encode(), stamp, big)})
    assert r.status_code == 413 and st.jobs() == []


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[]", {"scope": "document"}, {"scope": "everything"}, {"scope": "all", "extra": 1},
     {"scope": "document", "document_id": "../../etc/passwd"}, {"scope": "prefix", "prefix": ""},
     {"scope": "all", "force": "sometimes"}],
)
def test_invalid_bodies_are_422(st, http, body):
    r = post(http, body)
    assert r.status_code == 422, r.text
    assert r.json()["detail"] and st.queue_depth("parse") == 0 and st.jobs() == []


def test_without_a_secret_everything_is_refused(st, folder):
    from workers.http.webhooks import webhook_router
    from workers.runtime.config import settings

    api = FastAPI()
    api.include_router(webhook_router(st, settings().model_copy(update={"webhook_secret": None}), dict))
    r = post(TestClient(api), {"scope": "all"})
    assert r.status_code == 503 and "SLUICE_WEBHOOK_SECRET" in r.json()["detail"]


def test_full_pipeline_answers_503_with_retry_after_and_the_retry_succeeds(st, http, folder):
    doc_id = _doc(st, folder, "other/a.md")
    for i in range(BOUND):
        st.admit(f"someone-else-{i}")
    started = time.perf_counter()
    r = post(http, {"scope": "document", "document_id": doc_id}, delivery="dlv-full")
    assert r.status_code == 503 and int(r.headers["Retry-After"]) > 0
    assert time.perf_counter() - started < 1.0
    assert st.queue_depth("parse") == 0
    st.r.delete("sluice:inflight")  # the pipeline drains
    r = post(http, {"scope": "document", "document_id": doc_id}, delivery="dlv-full")
    assert r.status_code == 202 and st.queue_depth("parse") == 1


def _job(st, job_id: str, until: Any, timeout_s: float = 10) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        job = st.job(job_id)
        if job and until(job):
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.05)


def test_bulk_reindex_is_paced_watchable_and_cancellable(st, http):
    from typer.testing import CliRunner

    from workers.cli import app

    started = time.perf_counter()
    r = post(http, {"scope": "all", "force": True})
    assert r.status_code == 202 and time.perf_counter() - started < 0.5
    job_id = r.json()["job_id"]
    job = _job(st, job_id, lambda j: j["submitted"] == BOUND // 2)
    assert job["total"] == 14 and job["status"] == "running"
    time.sleep(1.5)  # no pipeline worker drains anything: the job must wait, not flood
    assert st.job(job_id)["submitted"] == BOUND // 2 and st.queue_depth("parse") == BOUND // 2
    assert post(http, {"scope": "all"}).status_code == 409  # one bulk job at a time

    for event_id in st.r.zrange("sluice:inflight", 0, -1):  # the pipeline finishes those two
        st.finish(event_id.decode(), "done")
    _job(st, job_id, lambda j: j["submitted"] == BOUND)

    status = CliRunner().invoke(app, ["reindex", "status"])
    assert status.exit_code == 0 and json.loads(status.output)[0]["id"] == job_id
    cancelled = CliRunner().invoke(app, ["reindex", "cancel"])
    assert cancelled.exit_code == 0 and "cancelled" in cancelled.output, cancelled.output
    job = st.job(job_id)
    assert (job["status"], job["submitted"]) == ("cancelled", BOUND)
    r = post(http, {"scope": "prefix", "prefix": "other/"})
    assert r.status_code == 202  # the slot is free again
    for event_id in st.r.zrange("sluice:inflight", 0, -1):  # the pipeline drains: the new job runs to its end
        st.finish(event_id.decode(), "done")
    assert _job(st, r.json()["job_id"], lambda j: j["finished_at"] is not None)["status"] == "done"


def test_prefix_reindex_runs_to_completion_and_deletes_what_is_gone(st, http, folder):
    (folder / "other/b.md").unlink()
    r = post(http, {"scope": "prefix", "prefix": "other/"})
    job = _job(st, r.json()["job_id"], lambda j: j["finished_at"] is not None)
    assert (job["status"], job["total"], job["outcomes"]) == ("done", 2, {"queued": 1, "deleted_at_source": 1})


def test_the_api_serves_the_webhooks(st):
    from workers.http.api import create_app

    r = TestClient(create_app()).post("/webhooks/reindex", json={"scope": "all"})
    assert r.status_code == 401


@pytest.mark.skipif(not (shutil.which("curl") and shutil.which("openssl")), reason="needs curl and openssl")
def test_the_documented_curl_example_works_against_a_running_api(sluice, st, folder):
    """The copy-paste example in docs/webhooks.md, run verbatim against `sluice api` over real HTTP."""
    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sluice.start("api", "api", "--port", str(port))
    doc_id = _doc(st, folder, "other/a.md")
    doc = (ROOT / "docs" / "webhooks.md").read_text()
    script = doc.split("```sh\n", 1)[1].split("```", 1)[0]
    script = (script.replace("the value of SLUICE_WEBHOOK_SECRET", SECRET)
              .replace("0123456789abcdef0123456789abcdef", doc_id).replace(":8000/", f":{port}/"))
    deadline = time.monotonic() + 60
    while True:
        assert sluice.procs["api"].poll() is None, sluice.log("api")[-3000:]
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                break
        except httpx.TransportError:
            assert time.monotonic() < deadline, "the API did not come up"
            time.sleep(0.2)
    try:
        out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=30, check=False)
        answer = json.loads(out.stdout)
        assert st.event(answer["event_ids"][0]).key == "other/a.md", out
    finally:
        sluice.stop("api")
