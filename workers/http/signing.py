"""Signed requests: HMAC-SHA256 over ``<timestamp>.<raw body>``, a 5-minute window, a bounded body.

Every request is checked cheapest refusal first: the body must fit the limit (413, counted while
reading, never trusting Content-Length alone), the signature must match and the timestamp be
within 5 minutes (401), and only then is the body parsed (422). The scheme is in docs/webhooks.md."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, TypeAdapter, ValidationError

from pipelines.errors import mib

TOLERANCE_S = 300  # signed timestamps older (or newer) than this are refused: limits replay


class Refusal(Exception):
    """An HTTP refusal with a reason the sender can act on."""

    def __init__(self, status: int, detail: Any, retry_after: int | None = None) -> None:
        super().__init__(detail)
        self.status, self.detail, self.retry_after = status, detail, retry_after

    def response(self) -> JSONResponse:
        headers = {"Retry-After": str(self.retry_after)} if self.retry_after else None
        return JSONResponse({"detail": self.detail}, status_code=self.status, headers=headers)


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """The ``X-Sluice-Signature`` value for a body sent at ``timestamp`` (unix seconds)."""
    return "sha256=" + hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def _unsigned_int(text: str) -> bool:
    """ASCII digits only: ``"²".isdigit()`` is true, yet ``int("²")`` fails."""
    return text.isascii() and text.isdigit()


def verify(secret: bytes, timestamp: str | None, signature: str | None, body: bytes, now: float) -> None:
    if not timestamp or not signature:
        raise Refusal(401, "missing X-Sluice-Timestamp or X-Sluice-Signature header")
    if not _unsigned_int(timestamp) or len(timestamp) > 12:
        raise Refusal(401, "X-Sluice-Timestamp must be unix seconds")
    if abs(now - int(timestamp)) > TOLERANCE_S:
        raise Refusal(401, "X-Sluice-Timestamp is more than 5 minutes from the server's clock")
    expected = sign(secret, timestamp, body).encode()
    if not hmac.compare_digest(expected, signature.strip().encode("utf-8", "surrogateescape")):
        raise Refusal(401, "signature does not match")


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refusing (413) as soon as it is known to exceed ``limit``."""
    declared = request.headers.get("content-length")
    if declared is not None and _unsigned_int(declared) and int(declared) > limit:
        raise Refusal(413, f"body is over the {mib(limit)} limit")
    parts, size = [], 0
    async for part in request.stream():
        size += len(part)
        if size > limit:
            raise Refusal(413, f"body is over the {mib(limit)} limit")
        parts.append(part)
    return b"".join(parts)


def parse_body(adapter: TypeAdapter[Any] | type[BaseModel], body: bytes) -> Any:
    try:
        if isinstance(adapter, TypeAdapter):
            return adapter.validate_json(body)
        return adapter.model_validate_json(body)
    except ValidationError as exc:
        errors = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
        raise Refusal(422, errors) from exc
