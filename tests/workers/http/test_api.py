"""The HTTP API against a real query worker: modes, filters, tenant isolation by API key, validation; and in a
browser: the search page at /, /docs and /redoc offline."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from cdp_browser import Browser, only_local
from conftest import wait_for
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


# The API as a person meets it in a browser, on this module's sluice (its documents, tenants and keys): the
# search page at /, the OpenAPI pages /docs and /redoc with no internet, and the answers behind them.
PAGE_DOCS = {  # acme's too, beside acme/plan.md
    "waterfall.txt": "The waterfall spray keeps the fern gully wet below the Kettle weir.",
    "water-quality/chlorine.md": "# Chlorine\n\n## Outlet\n\nChlorine residual at the Kettle weir outlet stays above 0.2 mg/l.",
    "reports/2024/pump-retrofit.md": "# Pump retrofit\n\n## Schedule\n\nThe pump retrofit at the Kettle weir finishes in March.",
}


@pytest.fixture(scope="module")
def served(http):
    """This module's API over real HTTP (a browser needs a URL), with three more of acme's documents."""
    import uvicorn

    from workers import client
    from workers.http.api import create_app
    from workers.runtime import config

    docs = Path(os.environ["SLUICE_DATA_DIR"]).parent / "browsing"
    for key, text in PAGE_DOCS.items():
        (docs / key).parent.mkdir(parents=True, exist_ok=True)
        (docs / key).write_text(text)
    os.environ["SLUICE_TENANT"] = "acme"
    config.settings.cache_clear()
    report = client.ingest(client.connect(config.settings()), config.settings(),
                           client.events_for([docs], config.settings()), wait=True)
    os.environ.pop("SLUICE_TENANT")
    config.settings.cache_clear()
    assert report.indexed == len(PAGE_DOCS), report
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the API did not start"
        time.sleep(0.1)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


@pytest.fixture
def browser(tmp_path):
    b = Browser(tmp_path / "profile")
    yield b
    b.close()


def test_docs_and_redoc_render_the_operations_with_no_internet(served, browser):
    browser.open(f"{served}/docs")
    paths = browser.until("[...document.querySelectorAll('.opblock-summary-path')].map(e => e.innerText)",
                          "Swagger UI's operations")
    assert {"/search", "/documents/{doc_id}", "/healthz", "/graph/path"} <= set(paths), paths
    browser.open(f"{served}/redoc")
    shown = browser.until("document.querySelector('.api-content') && document.body.innerText", "ReDoc's operations")
    assert "sluice (0.1.0)" in shown and "/documents/{doc_id}" in shown and "Search Get" in shown, shown[:2000]
    only_local(browser, served)


def test_every_get_search_parameter_is_described_in_the_openapi_schema(served):
    operation = httpx.get(f"{served}/openapi.json").json()["paths"]["/search"]["get"]
    described = {p["name"]: p.get("description", "").strip() for p in operation["parameters"]}
    assert {"q", "k", "mode", "tenant", "prefix", "created_after", "scope", "filter"} <= set(described)
    assert [name for name, text in described.items() if not text] == []


def test_the_search_page_finds_a_document_with_a_key_and_opens_it(served, browser):
    browser.open(f"{served}/")
    browser.type("#q", "when does the pump retrofit finish", enter=True)
    refused = browser.until("document.querySelector('#message.error')?.innerText", "the missing key")
    assert "API key" in refused and browser.js("document.querySelector('#keybox').open")

    browser.type("#key", ACME)
    browser.type("#q", "", enter=True)
    browser.until("document.querySelectorAll('li.hit').length", "results")
    first = browser.js("""(() => { const li = document.querySelector('li.hit');
        return {rank: li.querySelector('.rank').innerText, doc: li.querySelector('a.doc').innerText,
                relevance: li.querySelector('.relevance').innerText, section: li.querySelector('.section').innerText,
                snippet: li.querySelector('.snippet').innerText}; })()""")
    assert first["rank"] == "#1" and first["doc"] == "Pump retrofit", first
    assert first["relevance"].strip() == "relevance 100%" and "Schedule" in first["section"], first
    assert "finishes in March" in first["snippet"], first
    assert browser.js("new URLSearchParams(location.search).get('q')") == "when does the pump retrofit finish"

    browser.js("document.querySelector('li.hit a.doc').click()")
    shown = browser.until("document.querySelector('#document h2') && document.querySelector('#document').innerText",
                          "the document view")
    assert "reports/2024/pump-retrofit.md" in shown and "The pump retrofit at the Kettle weir finishes in March." in shown
    only_local(browser, served)
    assert ACME not in " ".join(browser.requests.values())  # the key travels in a header, never in a URL


def test_the_search_page_filters_by_a_partial_key_prefix(served, browser):
    browser.open(f"{served}/?q=Kettle+weir&prefix=water&mode=lexical")
    browser.js(f"localStorage.setItem('sluice.apiKey', {json.dumps(ACME)})")  # kept from an earlier visit
    browser.open(f"{served}/?q=Kettle+weir&prefix=water&mode=lexical")
    keys = browser.until("[...document.querySelectorAll('li.hit .section')].map(e => e.innerText)", "results")
    assert sorted(k.rsplit(" · ", 1)[-1] for k in keys) == ["water-quality/chlorine.md", "waterfall.txt"], keys
    assert browser.js("document.querySelector('#filters').open")


def _keys(served: str, **params: str) -> set[str]:
    r = httpx.get(f"{served}/search", params={"q": "Kettle weir pump chlorine waterfall", "k": "20", **params},
                  headers={"X-API-Key": ACME})
    assert r.status_code == 200, r.text
    return {h["key"] for h in r.json()["hits"]}


def test_a_prefix_is_a_prefix_of_the_key_through_the_api(served):
    assert _keys(served) == set(PAGE_DOCS) | {"plan.md"}  # acme's, the key's one tenant
    assert _keys(served, prefix="water") == {"waterfall.txt", "water-quality/chlorine.md"}
    assert _keys(served, prefix="reports/2024/") == _keys(served, prefix="rep") == {"reports/2024/pump-retrofit.md"}
    assert _keys(served, prefix="reports/2025/") == set()


def test_a_document_reads_as_typed_fields_with_iso_times_and_one_summary(served):
    hit = httpx.get(f"{served}/search", params={"q": "chlorine residual", "prefix": "water-quality/"},
                    headers={"X-API-Key": ACME}).json()["hits"][0]

    def read() -> dict[str, Any]:
        r = httpx.get(f"{served}/documents/{hit['doc_id']}", headers={"X-API-Key": ACME})
        assert r.status_code == 200, r.text
        return r.json()

    deadline = time.monotonic() + 30  # the extractive summary is a follow-up of the ingest
    while (doc := read())["summary"] is None:
        assert time.monotonic() < deadline, doc
        time.sleep(0.5)
    status = doc["status"]
    assert status["key"] == "water-quality/chlorine.md" and status["file_type"] == "md"
    assert status["chunks"] == 1 and isinstance(status["chunks_embedded"], int)
    assert isinstance(status["pii_counts"], dict) and status["stages"][0] == "parse"
    assert abs(datetime.fromisoformat(status["updated_at"]).timestamp() - time.time()) < 600
    assert not any(name.startswith("summary") for name in status), status  # the summary once, below
    assert doc["summary"]["kind"] == "extractive" and "Chlorine residual" in doc["summary"]["text"]
    assert datetime.fromisoformat(doc["chunks"][0]["updated_at"]).tzinfo is not None
    assert doc["chunks"][0]["section"] == "Outlet" and doc["chunks"][0]["position"] == 0
    assert httpx.get(f"{served}/documents/{hit['doc_id']}").status_code == 401


def test_a_path_to_an_unknown_entity_names_it(http):
    globex = {"tenant": "globex"}
    known = wait_for(lambda: http.get("/graph/entities", params={"q": "Globex", **globex}).json(), "Globex in the graph")
    r = http.get("/graph/path", params={"from": known[0]["name"], "to": "Zanzibar Widgets", **globex})
    assert r.status_code == 404
    assert r.json()["detail"] == ("no entity 'Zanzibar Widgets' in the graph "
                                  "(try GET /graph/entities?q=Zanzibar Widgets)")
