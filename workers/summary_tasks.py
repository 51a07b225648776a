"""Summary tasks: an extractive summary for every document, batch summaries when a model is set.

``summarise`` runs after ``graph_extract`` on a pipeline worker: it stores the
local extractive summary at once (so nothing waits on, or fails for want of,
an API key) and, when an OpenAI-compatible endpoint is configured, queues the
document's batch requests. ``summary_tick`` (celery beat) submits, polls and
collects batches under a Redis lock; all batch state is in Redis, so any
worker, restarted or not, carries on where the last tick stopped.

A summary is kept under ``sluice:summary:<doc id>`` and copied onto the
document's status hash (what ``GET /documents/{id}`` and ``sluice status``
show); both writes are refused if the document's content changed meanwhile.
Each stored summary is then indexed as a search point in the query worker (the
index's owner; writes reach it through its ``index`` queue): by ``graph_apply``
at the end of a document's follow-ups, or by ``summary_index`` for a summary
collected from a batch.
"""

from __future__ import annotations

import json
import logging
import time
from functools import cache
from typing import Any

import redis

from pipelines.batches import BatchConfig, BatchSummariser, Hooks
from pipelines.summarise import (
    EXTRACTIVE_METHOD,
    Prompt,
    extractive_summary,
    plan,
    token_counter,
)
from schemas.events import Event
from schemas.settings import Settings
from schemas.summaries import Summary
from workers import resources
from workers.app import app
from workers.config import settings
from workers.graph_tasks import followup_chunks
from workers.runtime.step import step
from workers.state import P, State

log = logging.getLogger("sluice.summaries")
FIELDS = ("summary", "summary_kind", "summary_method", "summary_model", "summary_version", "summary_error")


class RedisStore:
    """The batch module's record store: JSON values under ``sluice:summ:``."""

    def __init__(self, r: redis.Redis) -> None:
        self.r = r
        self.p = f"{P}summ:"

    def get(self, key: str) -> dict[str, Any] | None:
        raw = self.r.get(self.p + key)
        return json.loads(raw) if raw else None

    def put(self, key: str, value: dict[str, Any]) -> None:
        self.r.set(self.p + key, json.dumps(value))

    def add(self, key: str, value: dict[str, Any]) -> bool:
        return bool(self.r.set(self.p + key, json.dumps(value), nx=True))

    def delete(self, key: str) -> None:
        self.r.delete(self.p + key)

    def items(self, prefix: str) -> list[tuple[str, dict[str, Any]]]:
        keys = sorted(self.r.scan_iter(f"{self.p}{prefix}*", count=1000))
        values = self.r.mget(keys) if keys else []
        return [(k.decode().removeprefix(self.p), json.loads(v)) for k, v in zip(keys, values) if v]


def batch_enabled(s: Settings | None = None) -> bool:
    s = s or settings()
    return bool(s.openai_api_key or s.openai_base_url)


def config(s: Settings) -> BatchConfig:
    return BatchConfig(
        model=s.summary_model, batch_size=s.summary_batch_size, max_age_s=s.summary_batch_age_s,
        max_attempts=s.summary_max_attempts, input_tokens=s.summary_input_tokens,
        output_tokens=s.summary_output_tokens, prices=s.summary_prices, discount=s.summary_batch_discount,
        budget_usd=s.summary_budget_usd,
    )


@cache
def _prompt() -> Prompt:
    return Prompt.load()


def summariser(st: State, client: Any = None) -> BatchSummariser:
    from workers import relation_tasks

    hooks = Hooks(
        current_version=st.indexed_version,
        deliver=lambda s: publish(st, s),
        relations=lambda found: relation_tasks.deliver(st, found),
        give_up=lambda doc_id, version, reason: _note(st, doc_id, version, summary_error=reason),
        scrub=lambda text: resources.redactor().redact(text).text,  # the redact stage, again
    )
    return BatchSummariser(RedisStore(st.r), config(settings()), hooks, token_counter(), _prompt(), client)


def openai_client() -> Any:
    from openai import OpenAI

    s = settings()
    key = s.openai_api_key.get_secret_value() if s.openai_api_key else "unused"
    return OpenAI(api_key=key, base_url=s.openai_base_url, timeout=s.openai_timeout_s, max_retries=1)


# --------------------------------------------------------------------------- summaries on documents


def summary(st: State, doc_id: str) -> Summary | None:
    raw = st.r.get(f"{P}summary:{doc_id}")
    return Summary.model_validate_json(raw) if raw else None


def _fields(s: Summary) -> dict[str, str]:
    return {"summary": s.text, "summary_kind": s.kind, "summary_method": s.method, "summary_model": s.model or "",
            "summary_version": s.version}


def _if_current(st: State, doc_id: str, version: str, write: Any) -> bool:
    """Run ``write(pipe)`` atomically, only while the document's indexed version is ``version``."""
    with st.r.pipeline() as pipe:
        while True:
            try:
                pipe.watch(f"{P}docver:{doc_id}")
                if st.indexed_version(doc_id) != version:
                    pipe.reset()
                    return False
                pipe.multi()
                write(pipe)
                pipe.execute()
                return True
            except redis.WatchError:
                continue


def store_summary(st: State, s: Summary) -> bool:
    """Keep a summary and show it on the document; False (and nothing written) if the content changed."""

    def write(pipe: Any) -> None:
        pipe.set(f"{P}summary:{s.doc_id}", s.model_dump_json())
        pipe.hset(f"{P}doc:{s.doc_id}", mapping=_fields(s))  # same hash as State.record_indexed
        pipe.hdel(f"{P}doc:{s.doc_id}", "summary_error")

    return _if_current(st, s.doc_id, s.version, write)


def publish(st: State, s: Summary, index: bool = True) -> bool:
    """Store a summary and (unless the caller indexes it) have the query worker index it; False if the content changed."""
    if not store_summary(st, s):
        return False
    if index:
        summary_index.delay(s.doc_id)
    return True


def _note(st: State, doc_id: str, version: str, **fields: str) -> None:
    _if_current(st, doc_id, version, lambda pipe: pipe.hset(f"{P}doc:{doc_id}", mapping=fields))


def refresh(st: State, event: Event) -> bool:
    """True if the document needs summarising; else re-shows the kept summary (re-indexing resets the hash)."""
    kept = summary(st, event.doc_id)
    if kept is None or kept.version != event.version or event.force:
        return True
    store_summary(st, kept)
    return False


def forget(st: State, doc_id: str) -> None:
    st.r.delete(f"{P}summary:{doc_id}")
    st.r.hdel(f"{P}doc:{doc_id}", *FIELDS)
    summariser(st).forget(doc_id)


# --------------------------------------------------------------------------- tasks


@step("summarise")
def summarise(st: State, event: Event) -> None:
    kept = summary(st, event.doc_id)
    if kept is not None and kept.version == event.version and not event.force:
        return
    texts = [c.text for c in followup_chunks(st, event.event_id)]
    local = Summary(doc_id=event.doc_id, version=event.version, text=extractive_summary(texts), kind="extractive",
                    method=EXTRACTIVE_METHOD, created_at=time.time())
    if not publish(st, local, index=False) or not batch_enabled():  # graph_apply indexes it
        return
    s = settings()
    b = summariser(st)
    b.enqueue(plan(event.doc_id, event.version, texts, b.prompt, b.count, s.summary_input_tokens, b.cfg.words,
                   time.time()))


def index_summary_of(st: State, doc_id: str) -> str:
    """Query worker: make the document's summary point match its stored summary (idempotent)."""
    from pipelines.summary_index import index_summary

    return index_summary(resources.index(), resources.embedder(), resources.bm25(), summary(st, doc_id), doc_id)


@app.task(name="sluice.summary_index")
def summary_index(doc_id: str) -> str:
    """A summary that arrived from a Batch API job, indexed by the query worker."""
    return index_summary_of(resources.state(), doc_id)


@app.task(name="sluice.summary_tick")
def summary_tick() -> dict[str, Any]:
    """Beat: recover, poll, collect, submit. One tick at a time across all workers."""
    if not batch_enabled():
        return {"enabled": False}
    st = resources.state()
    lock = st.r.lock(f"{P}summ:lock", timeout=max(120, int(settings().openai_timeout_s * 8)))
    if not lock.acquire(blocking=False):
        return {"busy": True}
    try:
        return summariser(st, openai_client()).tick()
    except Exception as exc:  # noqa: BLE001  (the endpoint is down or slow: the next tick carries on)
        log.warning("summary tick failed: %s: %s", type(exc).__name__, exc)
        return {"error": f"{type(exc).__name__}: {exc}"[:300]}
    finally:
        try:
            lock.release()
        except redis.exceptions.LockError:
            pass


def status(st: State) -> dict[str, Any]:
    """Summary mode and Batch API cost totals, for ``sluice status``."""
    totals = summariser(st).totals().model_dump()
    return {"mode": "batch" if batch_enabled() else "extractive only", "tokens": token_counter().name, **totals}


def summary_view(status: dict[str, str]) -> dict[str, str] | None:
    """The summary fields of a document's status hash, for ``GET /documents/{id}``."""
    if "summary" not in status:
        return None
    return {"text": status["summary"], **{f: status.get(f"summary_{f}", "") for f in ("kind", "method", "model", "version")},
            **({"error": status["summary_error"]} if status.get("summary_error") else {})}
