"""Headless chromium driven over the DevTools protocol on a pipe (--remote-debugging-pipe): no websocket
library, no browser download. Every request a page makes is recorded, and names other than 127.0.0.1
do not resolve, as behind a firewall."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest


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


def only_local(browser: Browser, base: str) -> None:
    """Nothing but this server was asked (a request the page's policy blocked never leaves the browser)."""
    def elsewhere() -> list[str]:
        return [u for u in browser.sent() if not u.startswith((base + "/", "data:", "blob:"))]

    deadline = time.monotonic() + 5  # a blocked request's failure is reported just after it is asked for
    while elsewhere() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert browser.sent() and elsewhere() == []
