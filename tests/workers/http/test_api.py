"""The HTTP API against a real query worker: modes, filters, tenant isolation, validation."""

from __future__ import annotations

import os

import pytest
from fastapi.testclient import TestClient

from harness import Sluice


@pytest.fixture(scope="module")
def http(tmp_path_factory):
    from workers import client
    from workers.runtime import config

    root = tmp_path_factory.mktemp("api")
    s = Sluice(root, tenants='["acme","globex"]')
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

    with TestClient(create_app()) as c:
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
        {"q": "x"},  # tenant is mandatory when tenants are configured
        {"q": "x", "tenant": "initech"},
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
