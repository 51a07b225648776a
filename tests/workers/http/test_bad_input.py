"""Hostile input is a 4xx, never a 500, and a 422 does not echo the request back.

A private Redis and no workers: every request here is refused before a query
worker would be asked. The webhook case goes over a real socket to a real
uvicorn server, because an HTTP client re-encodes a raw ``\\xb2`` header byte.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn
from fastapi.testclient import TestClient

from harness import Sluice


@pytest.fixture(scope="module")
def app(tmp_path_factory):  # type: ignore[no-untyped-def]
    s = Sluice(tmp_path_factory.mktemp("badinput"), webhook_secret="a webhook secret")
    from workers.http.api import create_app

    yield create_app()
    s.close()


@pytest.fixture(scope="module")
def http(app) -> TestClient:  # type: ignore[no-untyped-def]
    return TestClient(app, raise_server_exceptions=False)


@pytest.fixture(scope="module")
def server(app) -> Iterator[int]:  # type: ignore[no-untyped-def]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not srv.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    yield port
    srv.should_exit = True
    thread.join(10)


def _raw_post(port: int, path: str, headers: bytes, body: bytes) -> bytes:
    request = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n"
               "Connection: close\r\n").encode() + headers + b"\r\n" + body
    with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
        c.sendall(request)
        answer = b""
        while part := c.recv(65536):
            answer += part
    return answer


@pytest.mark.parametrize("stamp", [b"\xb2", b"\xb9\xb2\xb3", b"17\xb2"])
def test_a_webhook_timestamp_of_non_ascii_digits_is_401(server, stamp):
    headers = b"X-Sluice-Timestamp: " + stamp + b"\r\nX-Sluice-Signature: sha256=00\r\n"
    answer = _raw_post(server, "/webhooks/reindex", headers, b'{"scope": "all"}')
    status = answer.split(b"\r\n", 1)[0]
    assert status.startswith(b"HTTP/1.1 401"), answer[:300]
    assert b"unix seconds" in answer


@pytest.mark.parametrize(
    "body", [b'{"q": "\\ud800"}', b'{"q": "x\\udc00y", "mode": "nope"}', b'{"q": "ok", "filters": {"\\ud800": "1"}}'],
)
def test_a_lone_surrogate_in_a_search_is_422(http, body):
    r = http.post("/search", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["msg"]


def test_a_422_does_not_echo_a_huge_input_back(http):
    big = "x" * 1_000_000
    for r in (http.post("/search", json={"q": big}), http.get("/search", params={"q": "y" * 60_000, "k": "0"})):
        assert r.status_code == 422, r.text[:300]
        assert len(r.content) < 2_000, len(r.content)
        assert r.json()["detail"][0]["msg"]
