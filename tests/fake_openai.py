"""A local OpenAI-compatible server for the Files and Batches endpoints, driven by the real SDK.

Tests tell it what the next batches do (``modes``): complete, fail (validation),
expire or stay in progress (part-done), fail some lines (``fail_lines``), or
answer slowly (``delay_s``). Each GET of a batch moves it one step:
validating -> in_progress -> (after ``steps`` more polls) its final state.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

import uvicorn
from fastapi import FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import JSONResponse, Response


def default_reply(custom_id: str, messages: list[dict[str, str]]) -> str:
    text = messages[-1]["content"].split("<document>", 1)[-1].replace("</document>", " ")
    return "Summary: " + " ".join(text.split()[:16])


@dataclass
class FakeOpenAI:
    modes: list[str] = field(default_factory=list)  # per new batch: complete | fail | expire | hang
    default_mode: str = "complete"
    steps: int = 1  # polls spent in_progress before the final state
    fail_lines: dict[str, int] = field(default_factory=dict)  # custom_id substring -> times to fail it
    delay_s: float = 0.0
    reply: Callable[[str, list[dict[str, str]]], str] = default_reply
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    batches: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)

    # -- helpers for tests ---------------------------------------------------

    def lines(self, batch_id: str) -> list[dict[str, Any]]:
        content = self.files[self.batches[batch_id]["input_file_id"]]["content"]
        return [json.loads(x) for x in content.decode().splitlines() if x.strip()]

    def created(self) -> list[str]:
        return list(self.batches)

    # -- the protocol --------------------------------------------------------

    def _file(self, content: bytes, filename: str, purpose: str) -> dict[str, Any]:
        fid = f"file-{uuid.uuid4().hex[:24]}"
        obj = {"id": fid, "object": "file", "bytes": len(content), "created_at": int(time.time()),
               "filename": filename, "purpose": purpose, "status": "processed"}
        self.files[fid] = {**obj, "content": content}
        return obj

    def _view(self, b: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in b.items() if not k.startswith("_")}

    def _advance(self, b: dict[str, Any]) -> None:
        mode, now = b["_mode"], int(time.time())
        if b["status"] == "validating":
            if mode == "fail":
                b.update(status="failed", failed_at=now, errors={"object": "list", "data": [
                    {"code": "invalid_request", "message": "the input file is not valid", "line": 1, "param": None}]})
            else:
                b.update(status="in_progress", in_progress_at=now)
            return
        if b["status"] == "cancelling":
            self._finish(b, "cancelled", half=True)
            return
        if b["status"] != "in_progress" or mode == "hang":
            return
        b["_polls"] += 1
        if b["_polls"] >= self.steps:
            self._finish(b, "expired" if mode == "expire" else "completed", half=mode == "expire")

    def _finish(self, b: dict[str, Any], status: str, half: bool) -> None:
        lines = self.lines(b["id"])
        done = lines[: len(lines) // 2] if half else lines
        out, err = [], []
        for line in done:
            cid = line["custom_id"]
            failing = next((k for k, n in self.fail_lines.items() if k in cid and n > 0), None)
            if failing is not None:
                self.fail_lines[failing] -= 1
                err.append({"id": f"batch_req_{uuid.uuid4().hex[:12]}", "custom_id": cid, "error": None,
                            "response": {"status_code": 500, "request_id": "req_x",
                                         "body": {"error": {"message": "the server had an error", "type": "server_error"}}}})
                continue
            messages = line["body"]["messages"]
            text = self.reply(cid, messages)
            prompt = sum(len(m["content"]) for m in messages) // 4
            body = {"id": f"chatcmpl-{uuid.uuid4().hex[:12]}", "object": "chat.completion", "created": int(time.time()),
                    "model": line["body"]["model"],
                    "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}],
                    "usage": {"prompt_tokens": prompt, "completion_tokens": len(text) // 4,
                              "total_tokens": prompt + len(text) // 4}}
            out.append({"id": f"batch_req_{uuid.uuid4().hex[:12]}", "custom_id": cid, "error": None,
                        "response": {"status_code": 200, "request_id": "req_x", "body": body}})
        now = int(time.time())
        b.update(status=status, request_counts={"total": len(lines), "completed": len(out), "failed": len(err)},
                 **{f"{status}_at": now, "finalizing_at": now})
        if out:
            b["output_file_id"] = self._file("\n".join(map(json.dumps, out)).encode() + b"\n", "out.jsonl", "batch_output")["id"]
        if err:
            b["error_file_id"] = self._file("\n".join(map(json.dumps, err)).encode() + b"\n", "err.jsonl", "batch_output")["id"]

    def app(self) -> FastAPI:
        api = FastAPI()

        @api.middleware("http")
        async def slow(request: Request, call_next):  # type: ignore[no-untyped-def]
            self.calls.append(f"{request.method} {request.url.path}")
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            return await call_next(request)

        @api.post("/v1/files")
        async def upload(file: Annotated[UploadFile, File()], purpose: Annotated[str, Form()]) -> dict[str, Any]:
            if purpose != "batch":
                raise HTTPException(400, "purpose must be batch")
            return self._file(await file.read(), file.filename or "upload.jsonl", purpose)

        @api.get("/v1/files/{file_id}/content")
        def content(file_id: str) -> Response:
            if file_id not in self.files:
                raise HTTPException(404, "no such file")
            return Response(self.files[file_id]["content"], media_type="application/octet-stream")

        @api.post("/v1/batches")
        def create(body: dict[str, Any]) -> dict[str, Any]:
            if body.get("input_file_id") not in self.files or body.get("completion_window") != "24h":
                raise HTTPException(400, "bad batch request")
            bid = f"batch_{uuid.uuid4().hex[:24]}"
            b = {"id": bid, "object": "batch", "endpoint": body["endpoint"], "input_file_id": body["input_file_id"],
                 "completion_window": "24h", "status": "validating", "created_at": int(time.time()),
                 "expires_at": int(time.time()) + 86400, "metadata": body.get("metadata"),
                 "request_counts": {"total": 0, "completed": 0, "failed": 0},
                 "_mode": self.modes.pop(0) if self.modes else self.default_mode, "_polls": 0}
            self.batches[bid] = b
            return self._view(b)

        @api.get("/v1/batches")
        def listing(limit: int = 20) -> dict[str, Any]:
            data = [self._view(b) for b in reversed(self.batches.values())][:limit]
            return {"object": "list", "data": data, "has_more": False,
                    "first_id": data[0]["id"] if data else None, "last_id": data[-1]["id"] if data else None}

        @api.get("/v1/batches/{batch_id}")
        def retrieve(batch_id: str) -> dict[str, Any]:
            b = self.batches.get(batch_id)
            if b is None:
                raise HTTPException(404, "no such batch")
            self._advance(b)
            return self._view(b)

        @api.post("/v1/batches/{batch_id}/cancel")
        def cancel(batch_id: str) -> JSONResponse:
            b = self.batches[batch_id]
            if b["status"] in ("validating", "in_progress"):
                b.update(status="cancelling", cancelling_at=int(time.time()))
            return JSONResponse(self._view(b))

        return api


class Served:
    """The fake on a free loopback port, in a thread of the test process."""

    def __init__(self, fake: FakeOpenAI) -> None:
        self.fake = fake
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.server = uvicorn.Server(uvicorn.Config(fake.app(), log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline:
                raise TimeoutError("fake OpenAI server did not start")
            time.sleep(0.02)

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
