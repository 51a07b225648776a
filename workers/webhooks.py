"""Signed webhooks: re-index requests and S3 / MinIO bucket notifications.

Every request is checked in the same order, cheapest refusal first: a secret
must be configured (503), the body must fit the limit (413, counted while
reading, never trusting Content-Length alone), the HMAC-SHA256 signature over
``<timestamp>.<raw body>`` must match and the timestamp be within 5 minutes
(401), and only then is the body parsed (422). ``X-Sluice-Delivery`` makes a
sender's retries idempotent: a stored 202 is replayed and nothing new enqueued.
The scheme is documented in docs/webhooks.md.

Handlers answer fast: single documents are submitted with a short admission
timeout (503 + Retry-After when full); bulk re-indexing runs in a background
thread that is paced by admission control and can be watched and cancelled
(``sluice reindex status|cancel``).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote_plus

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, TypeAdapter, ValidationError
from redis.exceptions import LockError
from starlette.concurrency import run_in_threadpool

from pipelines.errors import PermanentError, TransientError, mib
from schemas.events import Action, Event, document_id
from schemas.settings import Settings
from schemas.webhooks import (
    AllScope,
    DocumentScope,
    PrefixScope,
    S3Notification,
    reindex_request,
)
from workers import s3
from workers.ingress import Full, Ingress, file_hash
from workers.sources import folder_path
from workers.state import P, State

log = logging.getLogger("sluice.webhooks")

TOLERANCE_S = 300  # signed timestamps older (or newer) than this are refused: limits replay
SUBMIT_TIMEOUT_S = 0.2  # how long a webhook waits for room before answering 503
RETRY_AFTER_S = 5
DELIVERY_TTL_S = 24 * 3600
SEQUENCER_TTL_S = 7 * 24 * 3600
LEASE_S = 60  # a bulk job that stops heartbeating for this long is abandoned
_DELIVERY = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

Documents = Callable[[], dict[str, dict[str, Any]]]


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


def _parse(adapter: TypeAdapter[Any] | type[BaseModel], body: bytes) -> Any:
    try:
        if isinstance(adapter, TypeAdapter):
            return adapter.validate_json(body)
        return adapter.model_validate_json(body)
    except ValidationError as exc:
        errors = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
        raise Refusal(422, errors) from exc


def current_version(st: State, s: Settings, source: str, key: str) -> str | None:
    """sha256 of what the source holds now for ``key`` (None: gone)."""
    if source.startswith(s3.S3):
        if problem := s3.key_problem(key):
            raise PermanentError(f"refused object key: {problem}")
        return s3.version_of(st, s3.client(s), source.removeprefix(s3.S3), key, s.max_document_bytes)
    try:
        return file_hash(folder_path(source, key))
    except FileNotFoundError:
        return None


def reindex_event(
    st: State, s: Settings, doc_id: str, info: dict[str, Any], req: DocumentScope | PrefixScope | AllScope
) -> Event | None:
    """The re-index event for one indexed document, read fresh from its source.

    None when the request's tenant rules the document out. A document whose
    source object is gone becomes a delete: the index follows the source."""
    known_tenant = st.document(doc_id).get("tenant")
    if req.tenant and known_tenant and known_tenant != req.tenant:
        return None
    version = current_version(st, s, info["source"], info["key"])
    return Event(
        source=info["source"],
        key=info["key"],
        action=Action.reindex if version else Action.delete,
        version=version or "",
        tenant=known_tenant or req.tenant or s.tenant,
        force=req.force,
    )


class ReindexJobs:
    """Bulk re-index in a background thread, one job at a time, paced by admission control.

    The job uses half of each bound, so watchers and single-document webhooks
    still find room while it runs. Its state lives in Redis, so any process
    (``sluice reindex status|cancel``) can watch or cancel it."""

    def __init__(self, st: State, s: Settings, documents: Documents) -> None:
        self.st, self.s, self.documents = st, s, documents
        half = {"max_in_flight": max(1, s.max_in_flight // 2), "max_queue_depth": max(1, s.max_queue_depth // 2)}
        self.paced = Ingress(st, s.model_copy(update=half))

    def start(self, req: PrefixScope | AllScope) -> dict[str, Any]:
        job_id = uuid.uuid4().hex[:12]
        holder = self.st.claim_bulk(job_id, LEASE_S)
        if holder:
            raise Refusal(409, f"re-index job {holder} is still running; `sluice reindex cancel` stops it")
        now = time.time()
        job: dict[str, Any] = {
            "id": job_id, "scope": req.scope, "prefix": getattr(req, "prefix", None), "force": req.force,
            "tenant": req.tenant, "status": "listing", "total": None, "submitted": 0, "outcomes": {},
            "skipped": 0, "errors": [], "started_at": now, "heartbeat": now, "finished_at": None,
        }
        self.st.put_job(job)
        threading.Thread(target=self._run, args=(job, req), name=f"reindex-{job_id}", daemon=True).start()
        return job

    def _save(self, job: dict[str, Any]) -> None:
        job["heartbeat"] = time.time()
        self.st.put_job(job)
        if job["finished_at"] is None:
            self.st.claim_bulk(job["id"], LEASE_S)

    def _cancelled(self, job: dict[str, Any]) -> bool:
        return bool((self.st.job(job["id"]) or {}).get("cancel_requested"))

    def _run(self, job: dict[str, Any], req: PrefixScope | AllScope) -> None:
        prefix = job["prefix"] or ""
        try:
            docs = sorted(
                (d for d in self.documents().items() if d[1].get("source") and (d[1].get("key") or "").startswith(prefix)),
                key=lambda d: (d[1]["source"], d[1]["key"]),
            )
            job.update(total=len(docs), status="running")
            self._save(job)
            for doc_id, info in docs:
                if self._cancelled(job):
                    break
                try:
                    event = reindex_event(self.st, self.s, doc_id, info, req)
                except (PermanentError, TransientError) as exc:
                    job["skipped"] += 1
                    job["errors"] = (job["errors"] + [{"key": info["key"], "error": str(exc)[:300]}])[-20:]
                    self._save(job)
                    continue
                if event is None:
                    job["skipped"] += 1
                elif not self._submit(job, event):
                    break
                self._save(job)
            job["status"] = "cancelled" if self._cancelled(job) else "done"
        except Exception as exc:  # the query worker or Redis went away: say so, do not hang
            log.exception("re-index job %s failed", job["id"])
            job["status"] = "failed"
            job["errors"] = (job["errors"] + [{"key": "", "error": f"{type(exc).__name__}: {exc}"[:300]}])[-20:]
        finally:
            job["finished_at"] = time.time()
            self._save(job)
            self.st.release_bulk(job["id"])

    def _submit(self, job: dict[str, Any], event: Event) -> bool:
        """Submit one event, waiting for room while watching for cancellation. False if cancelled."""
        while True:
            try:
                _, outcome = self.paced.submit(event, timeout_s=1.0)
                break
            except Full:
                if self._cancelled(job):
                    return False
                self._save(job)  # heartbeat while waiting
        job["submitted"] += 1
        label = "deleted_at_source" if event.action == Action.delete else outcome
        job["outcomes"][label] = job["outcomes"].get(label, 0) + 1
        return True


def job_view(job: dict[str, Any]) -> dict[str, Any]:
    """A job as an operator reads it: an unfinished job whose owner stopped heartbeating is abandoned."""
    view = dict(job)
    if job["finished_at"] is None and time.time() - job["heartbeat"] > LEASE_S:
        view["status"] = "abandoned"
    elif job["finished_at"] is None and job.get("cancel_requested"):
        view["status"] = "cancelling"
    return view


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
        req = _parse(reindex_request, body)
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
        note = _parse(S3Notification, body)
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
            with self.st.r.lock(f"{P}lock:s3:{doc_id}", timeout=120, blocking_timeout=10):
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
    from workers import client

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
