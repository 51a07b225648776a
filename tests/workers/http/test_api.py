"""The HTTP API against a real query worker: modes, filters, tenant isolation by API key, validation."""

from __future__ import annotations

import json
import os
import time

import pytest
from fastapi.testclient import TestClient

from harness import Sluice

ADMIN, ACME, GLOBEX = "key-admin-7f3e", "key-acme-19ab", "key-globex-c04d"  # API keys bound to tenants
KEYS = {ADMIN: ["acme", "globex"], ACME: ["acme"], GLOBEX: ["globex"]}
WEBHOOK_SECRET = "webhook secret of the api test"


@pytest.fixture(scope="module")
def http(tmp_path_factory):
    from workers import client
    from workers.runtime import config

    root = tmp_path_factory.mktemp("api")
    s = Sluice(root, tenants='["acme","globex"]', api_keys=json.dumps(KEYS), webhook_secret=WEBHOOK_SECRET)
    s.start_workers()
    for tenant, name, text in (
        ("acme", "acme/plan.md", "# Plan\n\nProject Nightjar ships the ORD-2024-8821 pump retrofit in March."),
        ("globex", "globex/secret.md", "# Secret\n\nGlobex Corp. keeps the ORD-2024-8821 incident report under seal."),
    ):
        os.environ["SLUICE_TENANT"] = tenant
        config.settings.cache_clear()
        path = root / "docs" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        st = client.connect(config.settings())
        report = client.ingest(st, config.settings(), client.events_for([root / "docs" / tenant], config.settings()), wait=True)
        assert report.indexed == 1, report
    os.environ.pop("SLUICE_TENANT")
    config.settings.cache_clear()
    from workers.http.api import create_app

    with TestClient(create_app(), headers={"X-API-Key": ADMIN}) as c:
        yield c
    s.close()


def test_health_and_readiness(http):
    assert http.get("/healthz").json() == {"status": "ok"}
    ready = http.get("/readyz")
    assert ready.status_code == 200 and ready.json()["index"]["chunks"] == 2


def test_search_modes_and_filters(http):
    for mode in ("hybrid", "lexical", "dense"):
        r = http.get("/search", params={"q": "ORD-2024-8821 pump retrofit", "mode": mode, "tenant": "acme"})
        assert r.status_code == 200, r.text
        hits = r.json()["hits"]
        assert hits and {h["key"] for h in hits} == {"plan.md"}
    r = http.post("/search", json={"q": "pump retrofit", "tenant": "acme", "filters": {"file_type": "md"}})
    assert r.status_code == 200 and r.json()["hits"][0]["retrievers"]


def test_a_tenant_never_sees_another_tenants_chunks(http):
    attempts = [
        http.get("/search", params={"q": "Globex incident report under seal", "tenant": "acme"}),
        http.get("/search", params={"q": "Globex incident", "tenant": "acme", "filter": "tenant:globex"}),
        http.post("/search", json={"q": "Globex incident", "tenant": "acme", "filters": {"tenant": "globex"}}),
        http.get("/search", params={"q": "Globex", "tenant": "acme", "mode": "lexical", "group_by_document": "true"}),
    ]
    for r in attempts:
        assert r.status_code == 200, r.text
        assert all("Globex" not in h["text"] for h in r.json()["hits"])
    globex_doc = http.get("/search", params={"q": "Globex", "tenant": "globex"}).json()["hits"][0]["doc_id"]
    assert http.get(f"/documents/{globex_doc}", params={"tenant": "acme"}).status_code == 404
    assert http.get(f"/documents/{globex_doc}").status_code == 404
    doc = http.get(f"/documents/{globex_doc}", params={"tenant": "globex"})
    assert doc.status_code == 200 and "Globex Corp. keeps" in doc.json()["chunks"][0]["text"]
    assert http.get(f"/search?q=Globex&doc_id={globex_doc}&tenant=acme").json()["hits"] == []


@pytest.mark.parametrize(
    "params",
    [
        {"q": "", "tenant": "acme"},
        {"q": "x", "k": "0", "tenant": "acme"},
        {"q": "x", "k": "500", "tenant": "acme"},
        {"q": "x", "mode": "fuzzy", "tenant": "acme"},
        {"q": "x", "tenant": "acme", "colour": "red"},
        {"q": "x", "tenant": "acme", "filter": "password:1"},
        {"q": "x"},  # tenant is mandatory when tenants are configured (the admin key reads two)
    ],
)
def test_bad_requests_are_422_with_a_message(http, params):
    r = http.get("/search", params=params)
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["msg"]


def test_bad_post_body_is_422(http):
    assert http.post("/search", json={"q": "x", "tenant": "acme", "colour": "red"}).status_code == 422
    assert http.post("/search", json={"tenant": "acme"}).status_code == 422
    assert http.get("/documents/nope", params={"tenant": "acme"}).status_code == 404


def _as(key: str | None) -> dict[str, str]:
    """Headers of a request made with ``key`` (None: no key at all)."""
    return {"X-API-Key": ""} if key is None else {"Authorization": f"Bearer {key}", "X-API-Key": ""}


def test_a_key_reads_only_its_tenants_chunks_documents_and_graph(http):
    globex_doc = http.get("/search", params={"q": "Globex", "tenant": "globex"}).json()["hits"][0]["doc_id"]
    acme = _as(ACME)
    for r in (
        http.get("/search", params={"q": "Globex incident", "tenant": "globex"}, headers=acme),
        http.post("/search", json={"q": "Globex incident", "tenant": "globex"}, headers=acme),
        http.get(f"/documents/{globex_doc}", params={"tenant": "globex"}, headers=acme),
        http.get("/graph/entities", params={"q": "Globex", "tenant": "globex"}, headers=acme),
        http.get("/graph/stats", params={"tenant": "globex"}, headers=acme),
        http.get("/graph/communities", params={"tenant": "globex"}, headers=acme),
    ):
        assert r.status_code == 403, (r.request.url, r.text)
    own = http.get("/search", params={"q": "Globex incident report ORD-2024-8821"}, headers=acme)  # its one tenant
    assert own.status_code == 200 and {h["key"] for h in own.json()["hits"]} == {"plan.md"}
    smuggled = http.post("/search", json={"q": "Globex incident", "filters": {"tenant": "globex"}}, headers=acme)
    assert smuggled.status_code == 200 and all("Globex" not in h["text"] for h in smuggled.json()["hits"])
    assert http.get(f"/documents/{globex_doc}", headers=acme).status_code == 404
    assert http.get("/graph/stats", headers=acme).status_code == 200
    assert http.get("/search", params={"q": "x", "tenant": "initech"}).status_code == 403  # unknown: not confirmed
    theirs = http.get(f"/documents/{globex_doc}", headers=_as(GLOBEX))
    assert theirs.status_code == 200 and "Globex Corp. keeps" in theirs.json()["chunks"][0]["text"]


@pytest.mark.parametrize("key", [None, "key-acme-19aX", ""])
def test_without_a_known_key_every_read_is_401(http, key):
    for path in ("/search?q=pump&tenant=acme", "/documents/0123456789abcdef0123456789abcdef", "/graph/stats"):
        r = http.get(path, headers=_as(key))
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", r.text
    assert http.get("/healthz", headers=_as(None)).status_code == 200


def test_webhooks_keep_their_own_signature_not_an_api_key(http):
    from workers.http.signing import sign

    body = json.dumps({"scope": "document", "document_id": "0" * 32}).encode()
    stamp = str(int(time.time()))
    signed = {"Content-Type": "application/json", "X-Sluice-Timestamp": stamp,
              "X-Sluice-Signature": sign(WEBHOOK_SECRET.encode(), stamp, body), **_as(None)}
    assert http.post("/webhooks/reindex", content=body, headers=signed).status_code == 404  # signed: no such doc
    forged = {**signed, "X-Sluice-Signature": sign(b"wrong", stamp, body), **_as(ADMIN)}
    assert http.post("/webhooks/reindex", content=body, headers=forged).status_code == 401  # a key is no signature


def test_tenants_without_keys_or_keys_beyond_the_tenants_are_refused():
    from schemas.settings import Settings
    from workers.http.auth import check

    with pytest.raises(ValueError, match="SLUICE_API_KEYS"):
        check(Settings.model_construct(tenants=["acme"], api_keys={}))
    with pytest.raises(ValueError, match="initech"):
        check(Settings.model_construct(tenants=["acme"], api_keys={"k": ["acme", "initech"]}))
    with pytest.raises(ValueError, match="name its tenants"):
        check(Settings.model_construct(tenants=["acme"], api_keys={"k": []}))
    check(Settings.model_construct(tenants=[], api_keys={}))  # the laptop: no tenants, no key
    check(Settings.model_construct(tenants=[], api_keys={"k": []}))  # or one key that reads everything
