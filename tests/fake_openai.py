"""A local OpenAI-compatible server for the Files and Batches endpoints, driven by the real SDK.

Tests tell it what the next batches do (``modes``): complete, fail (validation),
expire or stay in progress (part-done), fail some lines (``fail_lines``), or
answer slowly (``delay_s``). Each GET of a batch moves it one step:
validating -> in_progress -> (after ``steps`` more polls) its final state.

Lines that ask for structured output (``response_format`` of type
``json_schema``) get an answer derived from the request (``derived_relations``:
the listed entities a sentence of the chunk relates by a keyword), unless
``malformed`` says to break it (bad JSON, a schema violation, an entity not in
the list, a refusal). A line whose schema strict mode would refuse fails
with HTTP 400, as OpenAI's would.
"""

from __future__ import annotations

import asyncio
import json
import re
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


# keyword in a sentence -> the predicate between the first two non-person entities it names
KEYWORDS = {"suppl": "supplies", "contract": "contracts_with", "owns ": "owns", "regulat": "regulates",
            "fund": "funds", "operat": "operates", "member": "member_of"}
MALFORMED = {
    "bad_json": lambda rels: '{"relations": [{"subject": ',
    "schema": lambda rels: json.dumps({"relations": [{**r, "predicate": "is_friends_with"} for r in rels] or [
        {"subject": "x", "predicate": "is_friends_with", "object": "y"}]}),
    "extra_field": lambda rels: json.dumps({"relations": rels, "confidence": 0.9}),
    "unknown_entity": lambda rels: json.dumps({"relations": [*rels, {"subject": "hooli", "predicate": "owns",
                                                                     "object": rels[0]["object"] if rels else "x"}]}),
}


def _between(text: str, name: str) -> str:
    return text.split(f"<{name}>", 1)[-1].split(f"</{name}>", 1)[0]


def derived_relations(custom_id: str, messages: list[dict[str, str]]) -> list[dict[str, str]]:
    """What a careful model would say about the chunk: only listed entities, only allowed predicates."""
    user = messages[-1]["content"]
    entities = [json.loads(x) for x in _between(user, "entities").strip().splitlines() if x.strip()]
    out = []
    for sentence in re.split(r"(?<=[.!?])\s+(?=[A-Z<])", " ".join(_between(user, "chunk").split())):
        named = sorted((sentence.find(e["name"]), e["id"]) for e in entities
                       if e["type"] != "PERSON" and e["name"] in sentence)
        predicate = next((p for k, p in KEYWORDS.items() if k in sentence.lower()), None)
        if predicate and len(named) >= 2 and named[0][1] != named[1][1]:
            out.append({"subject": named[0][1], "predicate": predicate, "object": named[1][1]})
    return out


def strict_problems(schema: dict[str, Any], where: str = "$") -> list[str]:
    """What OpenAI's strict mode would refuse: objects must close and require every property."""
    found = []
    if schema.get("type") == "object":
        if schema.get("additionalProperties") is not False:
            found.append(f"{where}: additionalProperties must be false")
        if set(schema.get("required", [])) != set(schema.get("properties", {})):
            found.append(f"{where}: every property must be required")
    for key, sub in schema.get("properties", {}).items():
        found += strict_problems(sub, f"{where}.{key}")
    for key, sub in schema.get("$defs", {}).items():
        found += strict_problems(sub, f"{where}.$defs.{key}")
    if isinstance(schema.get("items"), dict):
        found += strict_problems(schema["items"], f"{where}[]")
    return found


@dataclass
class FakeOpenAI:
    modes: list[str] = field(default_factory=list)  # per new batch: complete | fail | expire | hang
    default_mode: str = "complete"
    steps: int = 1  # polls spent in_progress before the final state
    fail_lines: dict[str, int] = field(default_factory=dict)  # custom_id substring -> times to fail it
    delay_s: float = 0.0
    reply: Callable[[str, list[dict[str, str]]], str] = default_reply
    relations: Callable[[str, list[dict[str, str]]], list[dict[str, str]]] = derived_relations
    malformed: dict[str, str] = field(default_factory=dict)  # custom_id or text substring -> MALFORMED key | "refusal"
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
            problems = self._format_problems(line["body"].get("response_format"))
            if problems:
                err.append({"id": f"batch_req_{uuid.uuid4().hex[:12]}", "custom_id": cid, "error": None,
                            "response": {"status_code": 400, "request_id": "req_x", "body": {"error": {
                                "message": "; ".join(problems), "type": "invalid_request_error"}}}})
                continue
            message = self._answer(cid, line["body"])
            text = message.get("content") or message.get("refusal") or ""
            prompt = sum(len(m["content"]) for m in messages) // 4
            body = {"id": f"chatcmpl-{uuid.uuid4().hex[:12]}", "object": "chat.completion", "created": int(time.time()),
                    "model": line["body"]["model"],
                    "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", **message}}],
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

    @staticmethod
    def _format_problems(fmt: dict[str, Any] | None) -> list[str]:
        if fmt is None:
            return []
        spec = fmt.get("json_schema") or {}
        if fmt.get("type") != "json_schema" or not isinstance(spec.get("schema"), dict):
            return ["response_format must be a json_schema with a schema"]
        return strict_problems(spec["schema"]) if spec.get("strict") is True else ["strict must be true"]

    def _answer(self, cid: str, body: dict[str, Any]) -> dict[str, Any]:
        """The assistant message: prose for a summary, structured JSON (or a refusal) when asked for."""
        if not body.get("response_format"):
            return {"content": self.reply(cid, body["messages"]), "refusal": None}
        rels = self.relations(cid, body["messages"])
        user = body["messages"][-1]["content"]
        how = next((v for k, v in self.malformed.items() if k in cid or k in user), None)
        if how == "refusal":
            return {"content": None, "refusal": "I'm sorry, I can't help with that."}
        return {"content": MALFORMED[how](rels) if how else json.dumps({"relations": rels}), "refusal": None}

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
