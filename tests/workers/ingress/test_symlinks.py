"""`sluice ingest` never follows a link out of the folder a file was named under.

A private sluice with real workers; the "outside" file is a real file next to,
not inside, the folders given to the CLI, reached through real symlinks.
"""

from __future__ import annotations

import hashlib
import json

import pytest

from harness import cli, no_traceback, searchable


@pytest.fixture
def outside(sluice, request):
    """A folder outside every folder named to the CLI, its file carrying a token of this test's own."""
    folder = sluice.root / f"elsewhere-{request.node.name[5:20]}"
    folder.mkdir()
    token = "zorblatt" + "".join(chr(97 + b % 26) for b in hashlib.sha256(request.node.name.encode()).digest()[:6])
    (folder / "passwd").write_text(f"root:x:0:0:{token}:/root:/bin/bash\n")
    return folder


def _secret(outside) -> str:  # type: ignore[no-untyped-def]
    return (outside / "passwd").read_text().split(":")[4]


def test_a_file_argument_that_links_outside_its_folder_is_refused(sluice, outside):
    docs = sluice.root / "single"
    docs.mkdir()
    (docs / "passwd.txt").symlink_to(outside / "passwd")
    result = cli(sluice.env, "ingest", str(docs / "passwd.txt"), "--wait", "--json", cwd=sluice.root)
    no_traceback(result)
    assert result.returncode != 0 and "outside" in result.stderr and "passwd.txt" in result.stderr, result.stderr
    assert not searchable(_secret(outside))


def test_a_folder_argument_refuses_its_links_to_outside_files(sluice, outside):
    docs = sluice.root / "folder"
    docs.mkdir()
    (docs / "note.txt").write_text("An ordinary note about the quarrelwick sluice gate.")
    (docs / "passwd.txt").symlink_to(outside / "passwd")
    result = cli(sluice.env, "ingest", str(docs), "--wait", "--json", cwd=sluice.root)
    no_traceback(result)
    assert result.returncode == 1, result.stderr  # the refused link counts as a failed document
    report = json.loads(result.stdout)
    assert report["indexed"] == 1
    (failed,) = report["failed"]
    assert failed["path"] == "passwd.txt" and "outside" in failed["error"], failed
    assert searchable("quarrelwick") and not searchable(_secret(outside))


def test_a_linked_folder_inside_the_inbox_is_confined_to_the_inbox(sluice, outside):
    inbox = sluice.root / "inbox"
    inbox.mkdir(exist_ok=True)
    (inbox / "etc").symlink_to(outside, target_is_directory=True)
    result = cli(sluice.env, "ingest", str(inbox / "etc"), "--wait", "--json", cwd=sluice.root)
    no_traceback(result)
    assert result.returncode == 1, result.stderr  # the refused link counts as a failed document
    report = json.loads(result.stdout)
    assert report["indexed"] == 0 and [f["path"] for f in report["failed"]] == ["etc/passwd"], report
    assert not searchable(_secret(outside))


def test_a_prefix_reindex_skips_a_link_out_of_the_folder_with_the_reason(sluice, outside):
    import time

    from fastapi import FastAPI
    from fastapi.testclient import TestClient
    from pydantic import SecretStr

    from schemas.events import document_id
    from workers import client
    from workers.http.signing import sign
    from workers.http.webhooks import webhook_router
    from workers.runtime.config import settings
    from workers.sources.folder import folder_source

    docs = sluice.root / "hooked"
    (docs / "notes").mkdir(parents=True)
    (docs / "notes" / "passwd.txt").symlink_to(outside / "passwd")
    source = folder_source(docs)
    listing = {document_id(source, "notes/passwd.txt"): {"source": source, "key": "notes/passwd.txt"}}
    s = settings().model_copy(update={"webhook_secret": SecretStr("a secret")})
    api = FastAPI()
    api.include_router(webhook_router(client.connect(s), s, documents=lambda: listing))
    body, stamp = b'{"scope": "prefix", "prefix": "notes/"}', str(int(time.time()))
    r = TestClient(api).post("/webhooks/reindex", content=body, headers={
        "X-Sluice-Timestamp": stamp, "X-Sluice-Signature": sign(b"a secret", stamp, body)})
    assert r.status_code == 202, r.text
    st = client.connect(s)
    deadline = time.monotonic() + 10
    while (job := st.job(r.json()["job_id"]))["finished_at"] is None:
        assert time.monotonic() < deadline, job
        time.sleep(0.05)
    assert (job["status"], job["submitted"], job["skipped"]) == ("done", 0, 1), job
    assert "outside" in job["errors"][0]["error"] and job["errors"][0]["key"] == "notes/passwd.txt"
