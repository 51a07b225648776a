"""Signed webhooks: re-index requests and S3 / MinIO bucket notifications.

A secret must be configured (503), then the request is verified (workers/http/signing.py).
``X-Sluice-Delivery`` makes a sender's retries idempotent: a stored 202 is replayed and nothing
new enqueued. Handlers answer fast: single documents are submitted with a short admission timeout
(503 + Retry-After when full); bulk re-indexing runs as a job (workers/http/reindex_jobs.py)."""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote_plus

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from redis.exceptions import LockError
from starlette.concurrency import run_in_threadpool

from pipelines.errors import PermanentError, TransientError
from schemas.events import Action, Event, document_id
from schemas.settings import Settings
from schemas.webhooks import DocumentScope, S3Notification, reindex_request
from workers import client
from workers.http.reindex_jobs import Documents, ReindexJobs, reindex_event
from workers.http.signing import Refusal, parse_body, read_body, verify
from workers.ingress.admission import Full, Ingress
from workers.runtime.state import State, keys
from workers.sources import s3

SUBMIT_TIMEOUT_S = 0.2  # how long a webhook waits for room before answering 503
RETRY_AFTER_S = 5
DELIVERY_TTL_S = 24 * 3600
SEQUENCER_TTL_S = 7 * 24 * 3600
_DELIVERY = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def _sequence(seq: str) -> tuple[int, str]:
    """S3 sequencers compare as hex numbers of any length."""
    digits = seq.upper().lstrip("0") or "0"
    return len(digits), digits


def _kind(event_name: str) -> Action | None:
    if "ObjectCreated:" in event_name:
        return Action.create
    if "ObjectRemoved:" in event_name:
        return Action.delete
    return None


class Webhooks:
    def __init__(self, st: State, s: Settings, documents: Documents) -> None:
        self.st, self.s, self.documents = st, s, documents
        self.ingress = Ingress(st, s)
        self.jobs = ReindexJobs(st, s, documents)

    async def handle(self, request: Request, action: Callable[[bytes], tuple[int, dict[str, Any]]]) -> JSONResponse:
        secret = self.s.webhook_secret.get_secret_value() if self.s.webhook_secret else ""
        if not secret:
            return Refusal(503, "webhooks are disabled: no SLUICE_WEBHOOK_SECRET is configured").response()
        delivery = request.headers.get("x-sluice-delivery")
        try:
            body = await read_body(request, self.s.webhook_max_body_bytes)
            h = request.headers
            verify(secret.encode(), h.get("x-sluice-timestamp"), h.get("x-sluice-signature"), body, time.time())
            if delivery is not None and not _DELIVERY.match(delivery):
                raise Refusal(400, "X-Sluice-Delivery must be 1-128 characters of A-Z a-z 0-9 . _ : -")
        except Refusal as r:
            return r.response()
        digest = hashlib.sha256(request.url.path.encode() + b"\n" + body).hexdigest()
        if delivery:
            prior = self.st.claim_delivery(delivery, digest, DELIVERY_TTL_S)
            if prior is not None:
                return self._replay(prior, digest)
        try:
            status, payload = await run_in_threadpool(action, body)
        except Refusal as r:
            if delivery:
                self.st.release_delivery(delivery)
            return r.response()
        except BaseException:
            if delivery:
                self.st.release_delivery(delivery)
            raise
        if delivery:
            self.st.answer_delivery(delivery, {"digest": digest, "status": status, "body": payload}, DELIVERY_TTL_S)
        return JSONResponse(payload, status_code=status)

    @staticmethod
    def _replay(prior: dict[str, Any], digest: str) -> JSONResponse:
        if prior.get("digest") != digest:
            return Refusal(409, "this X-Sluice-Delivery id was already used for a different request").response()
        if "status" not in prior:
            return Refusal(409, "this delivery is still being processed", retry_after=1).response()
        return JSONResponse(prior["body"], status_code=prior["status"], headers={"X-Sluice-Replayed": "true"})

    def _submit(self, event: Event) -> tuple[str, str]:
        try:
            return self.ingress.submit(event, timeout_s=SUBMIT_TIMEOUT_S)
        except Full as exc:
            raise Refusal(503, "the pipeline is full; retry later", retry_after=RETRY_AFTER_S) from exc

    # -- POST /webhooks/reindex ---------------------------------------------
    def reindex(self, body: bytes) -> tuple[int, dict[str, Any]]:
        req = parse_body(reindex_request, body)
        if not isinstance(req, DocumentScope):
            job = self.jobs.start(req)
            return 202, {"event_ids": [], "job_id": job["id"], "status": job["status"]}
        info = self._locate(req.document_id)
        try:
            event = reindex_event(self.st, self.s, req.document_id, info, req)
        except TransientError as exc:
            raise Refusal(503, str(exc), retry_after=RETRY_AFTER_S) from exc
        except PermanentError as exc:
            raise Refusal(422, f"cannot re-index {info['key']}: {exc}") from exc
        if event is None:
            raise Refusal(404, f"document {req.document_id} does not belong to tenant {req.tenant}")
        event_id, outcome = self._submit(event)
        return 202, {"event_ids": [event_id], "outcome": outcome, "action": event.action.value}

    def _locate(self, doc_id: str) -> dict[str, Any]:
        """Source and key of an indexed document: Redis knows it cheaply; the index knows it surely."""
        doc = self.st.document(doc_id)
        if self.st.indexed_version(doc_id) and doc.get("source") and doc.get("key"):
            return {"source": doc["source"], "key": doc["key"]}
        try:
            info = self.documents().get(doc_id)
        except Exception as exc:
            raise Refusal(503, f"cannot list the index: {exc}", retry_after=RETRY_AFTER_S) from exc
        if not info or not info.get("source"):
            raise Refusal(404, f"document {doc_id} is not indexed")
        return info

    # -- POST /webhooks/s3 ---------------------------------------------------
    def s3_notification(self, body: bytes) -> tuple[int, dict[str, Any]]:
        note = parse_body(S3Notification, body)
        results: list[dict[str, Any]] = []
        newest: dict[tuple[str, str], tuple[Action, str | None, str | None]] = {}
        for rec in note.records:
            raw, kind = rec.s3.object.key, _kind(rec.event_name)
            try:
                key, problem = unquote_plus(raw, errors="strict"), None
            except UnicodeDecodeError:
                key, problem = raw, "key is not valid UTF-8"
            problem = problem or s3.key_problem(key)
            if kind is None or problem:
                reason = problem or f"{rec.event_name} is neither a create nor a delete"
                results.append({"key": raw[:256], "outcome": "refused" if problem else "ignored", "reason": reason})
                continue
            seq, ident = rec.s3.object.sequencer, (rec.s3.bucket.name, key)
            earlier = newest.get(ident)
            if earlier and seq and earlier[2] and _sequence(seq) <= _sequence(earlier[2]):
                continue  # an older (or the same) change to a key this batch also reports later
            newest[ident] = (kind, rec.s3.object.e_tag, seq)
        for (bucket, key), (kind, etag, seq) in newest.items():
            results.append({"key": key, **self._apply(bucket, key, kind, etag, seq)})
        return 202, {"event_ids": [r["event_id"] for r in results if "event_id" in r], "records": results}

    def _apply(self, bucket: str, key: str, kind: Action, etag: str | None, seq: str | None) -> dict[str, Any]:
        """One key's newest change, under a per-key lock so concurrent deliveries keep sequencer order.

        The sequencer is recorded only after the event is admitted: a 503 leaves
        it unrecorded, so the sender's retry is not mistaken for a stale duplicate."""
        source = s3.s3_source(bucket)
        doc_id = document_id(source, key)
        try:
            with self.st.r.lock(keys.s3_lock(doc_id), timeout=120, blocking_timeout=10):
                last = self.st.sequencer(doc_id)
                if seq and last and _sequence(seq) <= _sequence(last):
                    return {"outcome": "stale", "sequencer": seq}
                if kind == Action.delete:
                    event: Event | None = Event(source=source, key=key, action=kind, version="", tenant=self.s.tenant)
                else:
                    c = s3.client(self.s)
                    event = s3.object_event(self.st, c, bucket, key, etag, self.s.tenant, self.s.max_document_bytes)
                answer: dict[str, Any] = {"outcome": "gone"}  # created, then deleted before we looked
                if event is not None:
                    event_id, outcome = self._submit(event)
                    answer = {"event_id": event_id, "action": event.action.value, "outcome": outcome}
                if seq:
                    self.st.set_sequencer(doc_id, seq, SEQUENCER_TTL_S)
                return answer
        except LockError as exc:
            raise Refusal(503, f"{key} is busy; retry later", retry_after=1) from exc
        except TransientError as exc:
            raise Refusal(503, str(exc), retry_after=RETRY_AFTER_S) from exc


def _indexed_documents() -> dict[str, dict[str, Any]]:
    """Every indexed document, from the index itself (the query worker owns it)."""
    return client.manifest(None, timeout_s=120)  # None: every source


def webhook_router(st: State, s: Settings, documents: Documents | None = None) -> APIRouter:
    """The webhook endpoints; ``documents`` lists what is indexed (tests pass their own)."""
    hooks = Webhooks(st, s, documents or _indexed_documents)
    router = APIRouter(prefix="/webhooks", tags=["webhooks"])

    def endpoint(action: Callable[[bytes], tuple[int, dict[str, Any]]]) -> Callable[[Request], Awaitable[JSONResponse]]:
        async def handler(request: Request) -> JSONResponse:
            return await hooks.handle(request, action)

        return handler

    router.add_api_route("/reindex", endpoint(hooks.reindex), methods=["POST"], status_code=202,
                         summary="Re-index a document, a key prefix or everything (signed).")
    router.add_api_route("/s3", endpoint(hooks.s3_notification), methods=["POST"], status_code=202,
                         summary="S3 / MinIO bucket notifications (signed).")
    return router
