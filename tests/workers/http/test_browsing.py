"""The API as a person meets it in a browser, against real workers: the search page at /, the OpenAPI
pages /docs and /redoc with no internet, and the answers behind them (typed document view, described
search parameters, prefix filters).

The browser is Debian's chromium, driven over the DevTools protocol on a pipe (--remote-debugging-pipe:
no websocket library, no browser download). Every request the page makes is recorded, and names that
are not 127.0.0.1 do not resolve, as behind a firewall.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

KEY = "page-key-5d1c"  # the one API key of this API, bound to no tenant
DOCS = {
    "waterfall.txt": "The waterfall spray keeps the fern gully wet below the Kettle weir.",
    "water-quality/chlorine.md": "# Chlorine\n\n## Outlet\n\nChlorine residual at the Kettle weir outlet stays above 0.2 mg/l.",
    "reports/2024/pump-retrofit.md": "# Pump retrofit\n\n## Schedule\n\nThe pump retrofit at the Kettle weir finishes in March.",
}


class Browser:
    """Headless chromium over the DevTools protocol (JSON messages ended by NUL on fds 3 and 4)."""

    def __init__(self, profile: Path) -> None:
        found = shutil.which("chromium") or shutil.which("chromium-browser")
        if not found:  # a missing browser is a broken set-up, not a reason to skip silently
            pytest.fail("chromium is not installed: `apt-get install -y chromium` (.ci/run installs it)")
        to_chrome, self._out = os.pipe()
        self._in, from_chrome = os.pipe()

        def pipes() -> None:  # the child reads commands on fd 3 and answers on fd 4 (dup2 makes them inheritable;
            os.dup2(to_chrome, 3)  # every other fd Python opened is close-on-exec)
            os.dup2(from_chrome, 4)

        self.proc = subprocess.Popen(
            [found, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--remote-debugging-pipe",
             "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
             "--disable-extensions", "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
             f"--user-data-dir={profile}", "about:blank"],
            preexec_fn=pipes, close_fds=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_chrome)
        os.close(from_chrome)
        self._next, self._answers, self.requests, self.blocked = 0, {}, {}, set()
        self._arrived = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        self.send("Network.enable", session=True)
        self.send("Page.enable", session=True)

    def _read(self) -> None:
        buffer = b""
        while chunk := os.read(self._in, 1 << 16):
            buffer += chunk
            *messages, buffer = buffer.split(b"\0")
            for raw in messages:
                message = json.loads(raw)
                params = message.get("params", {})
                if message.get("method") == "Network.requestWillBeSent":
                    self.requests[params["requestId"]] = params["request"]["url"]
                if message.get("method") == "Network.loadingFailed" and params.get("blockedReason"):
                    self.blocked.add(params["requestId"])  # refused by the browser (the page's policy): never sent
                with self._arrived:
                    if "id" in message:
                        self._answers[message["id"]] = message
                    self._arrived.notify_all()

    def send(self, method: str, session: bool = False, **params: Any) -> dict[str, Any]:
        self._next += 1
        message: dict[str, Any] = {"id": self._next, "method": method, "params": params}
        if session:
            message["sessionId"] = self.session
        os.write(self._out, json.dumps(message).encode() + b"\0")
        with self._arrived:
            assert self._arrived.wait_for(lambda: self._next in self._answers, timeout=30), method
            answer = self._answers.pop(self._next)
        assert "error" not in answer, answer
        return answer["result"]

    def js(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", session=True, expression=expression, returnByValue=True,
                           awaitPromise=True)
        assert "exceptionDetails" not in result, result
        return result["result"].get("value")

    def until(self, expression: str, what: str, timeout_s: float = 30) -> Any:
        deadline = time.monotonic() + timeout_s
        while not (value := self.js(expression)):
            assert time.monotonic() < deadline, f"the page never showed {what}: {self.js('document.body.innerText')!r}"
            time.sleep(0.2)
        return value

    def open(self, url: str) -> None:
        self.send("Page.navigate", session=True, url=url)
        self.until("document.readyState === 'complete' && location.href !== 'about:blank'", url)

    def type(self, selector: str, text: str, enter: bool = False) -> None:
        """Focus a field and type into it as a person does (input events, then Enter)."""
        self.js(f"document.querySelector({json.dumps(selector)}).focus()")
        if text:
            self.send("Input.insertText", session=True, text=text)
        if enter:
            for kind in ("keyDown", "keyUp"):
                self.send("Input.dispatchKeyEvent", session=True, type=kind, key="Enter", code="Enter",
                          windowsVirtualKeyCode=13, text="\r" if kind == "keyDown" else "")

    def sent(self) -> list[str]:
        """The URLs the page asked for that the browser sent (not those it blocked)."""
        return [url for request, url in list(self.requests.items()) if request not in self.blocked]

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait(10)
        os.close(self._out)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(sluice):
    """This module's sluice with three documents, its API behind one key, served over real HTTP."""
    import uvicorn

    from workers import client
    from workers.http.api import create_app
    from workers.runtime import config

    docs = sluice.root / "browsing"
    for key, text in DOCS.items():
        (docs / key).parent.mkdir(parents=True, exist_ok=True)
        (docs / key).write_text(text)
    report = client.ingest(client.connect(config.settings()), config.settings(),
                           client.events_for([docs], config.settings()), wait=True)
    assert report.indexed == len(DOCS), report
    os.environ["SLUICE_API_KEYS"] = json.dumps({KEY: []})
    config.settings.cache_clear()
    server = uvicorn.Server(uvicorn.Config(create_app(), host="127.0.0.1", port=_free_port(), log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the API did not start"
        time.sleep(0.1)
    yield f"http://127.0.0.1:{server.config.port}"
    server.should_exit = True
    thread.join(10)
    os.environ.pop("SLUICE_API_KEYS")
    config.settings.cache_clear()


@pytest.fixture
def browser(tmp_path):
    b = Browser(tmp_path / "profile")
    yield b
    b.close()


def _only_local(browser: Browser, base: str) -> None:
    """Nothing but this server was asked (a request the page's policy blocked never leaves the browser)."""
    def elsewhere() -> list[str]:
        return [u for u in browser.sent() if not u.startswith((base + "/", "data:", "blob:"))]

    deadline = time.monotonic() + 5  # a blocked request's failure is reported just after it is asked for
    while elsewhere() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert browser.sent() and elsewhere() == []


def test_docs_and_redoc_render_the_operations_with_no_internet(served, browser):
    browser.open(f"{served}/docs")
    paths = browser.until("[...document.querySelectorAll('.opblock-summary-path')].map(e => e.innerText)",
                          "Swagger UI's operations")
    assert {"/search", "/documents/{doc_id}", "/healthz", "/graph/path"} <= set(paths), paths
    browser.open(f"{served}/redoc")
    shown = browser.until("document.querySelector('.api-content') && document.body.innerText", "ReDoc's operations")
    assert "sluice (0.1.0)" in shown and "/documents/{doc_id}" in shown and "Search Get" in shown, shown[:2000]
    _only_local(browser, served)


def test_every_get_search_query_parameter_is_described_in_the_openapi_schema(served):
    operation = httpx.get(f"{served}/openapi.json").json()["paths"]["/search"]["get"]
    described = {p["name"]: p.get("description", "").strip() for p in operation["parameters"] if p["in"] == "query"}
    assert {"q", "k", "mode", "tenant", "prefix", "created_after", "scope", "filter"} <= set(described)
    assert [name for name, text in described.items() if not text] == []


def test_the_search_page_finds_a_document_with_a_key_and_opens_it(served, browser):
    browser.open(f"{served}/")
    browser.type("#q", "when does the pump retrofit finish", enter=True)
    refused = browser.until("document.querySelector('#message.error')?.innerText", "the missing key")
    assert "API key" in refused and browser.js("document.querySelector('#keybox').open")

    browser.type("#key", KEY)
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
    _only_local(browser, served)
    assert KEY not in " ".join(browser.requests.values())  # the key travels in a header, never in a URL


def test_the_search_page_filters_by_a_partial_key_prefix(served, browser):
    browser.open(f"{served}/?q=Kettle+weir&prefix=water&mode=lexical")
    browser.js(f"localStorage.setItem('sluice.apiKey', {json.dumps(KEY)})")  # kept from an earlier visit
    browser.open(f"{served}/?q=Kettle+weir&prefix=water&mode=lexical")
    keys = browser.until("[...document.querySelectorAll('li.hit .section')].map(e => e.innerText)", "results")
    assert sorted(k.rsplit(" · ", 1)[-1] for k in keys) == ["water-quality/chlorine.md", "waterfall.txt"], keys
    assert browser.js("document.querySelector('#filters').open")


def _keys(served: str, **params: str) -> set[str]:
    r = httpx.get(f"{served}/search", params={"q": "Kettle weir pump chlorine waterfall", "k": "20", **params},
                  headers={"X-API-Key": KEY})
    assert r.status_code == 200, r.text
    return {h["key"] for h in r.json()["hits"]}


def test_a_prefix_is_a_prefix_of_the_key_through_the_api(served):
    assert _keys(served) == set(DOCS)
    assert _keys(served, prefix="water") == {"waterfall.txt", "water-quality/chlorine.md"}
    assert _keys(served, prefix="reports/2024/") == _keys(served, prefix="rep") == {"reports/2024/pump-retrofit.md"}
    assert _keys(served, prefix="reports/2025/") == set()


def test_a_document_reads_as_typed_fields_with_iso_times_and_one_summary(served):
    hit = httpx.get(f"{served}/search", params={"q": "chlorine residual", "prefix": "water-quality/"},
                    headers={"X-API-Key": KEY}).json()["hits"][0]

    def read() -> dict[str, Any]:
        r = httpx.get(f"{served}/documents/{hit['doc_id']}", headers={"X-API-Key": KEY})
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
