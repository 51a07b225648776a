"""Re-index requests: the event for one indexed document, read fresh from its source, and bulk jobs.

Bulk re-indexing runs in a background thread paced by admission control; its state lives in
Redis, so any process (``sluice reindex status|cancel``) can watch or cancel it.

A forced re-index of the whole index (``{"scope": "all", "force": true}``, no tenant) is what a user
runs after upgrading sluice: every document is read again from its source (so a better parser,
redactor or chunker reaches every document: the index keeps no unredacted text, so nothing else
can apply a better redaction), then a fresh index generation is built from those chunk texts with
the configured embedder (a new embedding model or runtime, a fresh shard or collection), compared
against the live one and switched to when the gate passes. The job's status walks through the
phases: running (re-reading), building, comparing, switching, done. Searches keep being answered
throughout: each document changes atomically, and the switch is one step."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from pipelines.errors import PermanentError, TransientError
from schemas.events import Action, Event
from schemas.settings import Settings
from schemas.webhooks import AllScope, DocumentScope, PrefixScope
from workers.http.signing import Refusal
from workers.ingress.admission import Full, Ingress
from workers.ingress.files import file_hash
from workers.runtime.state import State
from workers.sources import s3
from workers.sources.folder import folder_path

log = logging.getLogger("sluice.webhooks")
LEASE_S = 60  # a bulk job that stops heartbeating for this long is abandoned
POLL_S = 1.0  # how often a job looks at its generation's build
Documents = Callable[[], dict[str, dict[str, Any]]]
Ask = Callable[[str, dict[str, Any]], dict[str, Any]]  # a `sluice generation` command to the index owner


def ask_index_owner(op: str, params: dict[str, Any]) -> dict[str, Any]:
    from workers.client import ask

    answer: dict[str, Any] = ask("generation", (op, params), timeout_s=600)
    return answer


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

    def __init__(self, st: State, s: Settings, documents: Documents, generation: Ask = ask_index_owner) -> None:
        self.st, self.s, self.documents, self.generation = st, s, documents, generation
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
            if self._cancelled(job):
                job["status"] = "cancelled"
            elif isinstance(req, AllScope) and req.force and not req.tenant:
                self._new_generation(job)
            else:
                job["status"] = "done"
        except Exception as exc:  # the query worker or Redis went away: say so, do not hang
            log.exception("re-index job %s failed", job["id"])
            job["status"] = "failed"
            job["errors"] = (job["errors"] + [{"key": "", "error": f"{type(exc).__name__}: {exc}"[:300]}])[-20:]
        finally:
            job["finished_at"] = time.time()
            self._save(job)
            self.st.release_bulk(job["id"])

    def _ask(self, op: str, params: dict[str, Any]) -> dict[str, Any]:
        answer = self.generation(op, params)
        if "refused" in answer:
            raise RuntimeError(f"the index owner refused {op}: {answer['refused']}")
        return answer

    def _new_generation(self, job: dict[str, Any]) -> None:
        """Build a fresh generation beside the live one, gate it, switch to it (the job's later phases)."""
        job["status"] = "building"
        made = self._ask("create", {})
        view = job["generation"] = {"name": made["name"], "space": made["space"], "backend": made["backend"]}
        self._save(job)
        while True:
            g = self._ask("list", {})["generations"][made["name"]]
            view.update({k: g[k] for k in ("status", "documents", "copied", "chunks_done", "chunks_total", "embedded")})
            if g["status"] != "building":
                break
            if self._cancelled(job):
                self._ask("drop", {"name": made["name"]})
                job["status"] = "cancelled"
                return
            self._save(job)
            time.sleep(POLL_S)
        if g["status"] == "failed":
            raise RuntimeError(f"building generation {made['name']} failed: {g.get('error', '')}")
        job["status"] = "comparing"
        self._save(job)
        gate = self._ask("compare", {"name": made["name"]})
        view["gate"] = {k: gate[k] for k in ("measure", "probes", "live", "candidate", "passed")}
        if not gate["passed"]:
            job["status"] = "failed"
            job["errors"] = (job["errors"] + [{"key": "", "error": (
                f"generation {made['name']} failed its gate ({gate['candidate']} vs {gate['live']}): it is kept, not live; "
                f"sluice generation switch {made['name']} --force makes it live, sluice generation drop removes it")}])[-20:]
            return
        job["status"] = "switching"
        self._save(job)
        switched = self._ask("switch", {"name": made["name"]})
        view.update(live=True, previous=switched["previous"])
        job["status"] = "done"

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
