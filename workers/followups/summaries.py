"""Summaries on documents: an extractive one for every document, batch ones when a model is set.

A summary is kept under ``sluice:summary:<doc id>`` and copied onto the document's status hash
(what ``GET /documents/{id}`` and ``sluice status`` show); both writes are refused if the
document's content changed meanwhile. Each stored summary is then indexed as a search point in
the index owner: by ``graph_apply`` at the end of a document's follow-ups, or by
``summary_index`` for a summary collected from a batch."""

from __future__ import annotations

import json
from functools import cache
from typing import Any

import redis

from pipelines.batches import BatchConfig
from pipelines.summarise import Prompt
from schemas.events import Event
from schemas.settings import Settings
from schemas.summaries import Summary
from workers.runtime import resources
from workers.runtime.app import app
from workers.runtime.config import settings
from workers.runtime.state import State, keys

FIELDS = ("summary", "summary_kind", "summary_method", "summary_model", "summary_version", "summary_error")


class RedisStore:
    """The batch module's record store: JSON values under ``sluice:summ:``."""

    def __init__(self, r: redis.Redis) -> None:
        self.r = r
        self.p = keys.SUMMARY_BATCHES

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


def batch_enabled(config: Settings | None = None) -> bool:
    config = config or settings()
    return bool(config.openai_api_key or config.openai_base_url)


def batch_config(config: Settings) -> BatchConfig:
    return BatchConfig(
        model=config.summary_model, batch_size=config.summary_batch_size, max_age_s=config.summary_batch_age_s,
        max_attempts=config.summary_max_attempts, input_tokens=config.summary_input_tokens,
        output_tokens=config.summary_output_tokens, prices=config.summary_prices, discount=config.summary_batch_discount,
        budget_usd=config.summary_budget_usd,
    )


@cache
def summary_prompt() -> Prompt:
    return Prompt.load()


def openai_client() -> Any:
    from openai import OpenAI

    config = settings()
    key = config.openai_api_key.get_secret_value() if config.openai_api_key else "unused"
    return OpenAI(api_key=key, base_url=config.openai_base_url, timeout=config.openai_timeout_s, max_retries=1)


def stored_summary(state: State, doc_id: str) -> Summary | None:
    raw = state.r.get(keys.summary(doc_id))
    return Summary.model_validate_json(raw) if raw else None


def _fields(summary: Summary) -> dict[str, str]:
    return {"summary": summary.text, "summary_kind": summary.kind, "summary_method": summary.method, "summary_model": summary.model or "",
            "summary_version": summary.version}


def _if_current(state: State, doc_id: str, version: str, write: Any) -> bool:
    """Run ``write(pipe)`` atomically, only while the document's indexed version is ``version``."""
    with state.r.pipeline() as pipe:
        while True:
            try:
                pipe.watch(keys.document_version(doc_id))
                if state.indexed_version(doc_id) != version:
                    pipe.reset()
                    return False
                pipe.multi()
                write(pipe)
                pipe.execute()
                return True
            except redis.WatchError:
                continue


def store_summary(state: State, summary: Summary) -> bool:
    """Keep a summary and show it on the document; False (and nothing written) if the content changed."""

    def write(pipe: Any) -> None:
        pipe.set(keys.summary(summary.doc_id), summary.model_dump_json())
        pipe.hset(keys.document(summary.doc_id), mapping=_fields(summary))  # same hash as State.record_indexed
        pipe.hdel(keys.document(summary.doc_id), "summary_error")

    return _if_current(state, summary.doc_id, summary.version, write)


def publish(state: State, summary: Summary, index: bool = True) -> bool:
    """Store a summary and (unless the caller indexes it) have the query worker index it; False if the content changed."""
    if not store_summary(state, summary):
        return False
    if index:
        summary_index.delay(summary.doc_id)
    return True


def note(state: State, doc_id: str, version: str, **fields: str) -> None:
    _if_current(state, doc_id, version, lambda pipe: pipe.hset(keys.document(doc_id), mapping=fields))


def refresh(state: State, event: Event) -> bool:
    """True if the document needs summarising; else re-shows the kept summary (re-indexing resets the hash)."""
    kept = stored_summary(state, event.doc_id)
    if kept is None or kept.version != event.version or event.force:
        return True
    store_summary(state, kept)
    return False


def index_summary_of(state: State, doc_id: str) -> str:
    """Query worker: make the document's summary point match its stored summary (idempotent)."""
    from pipelines.summary_index import index_summary

    summary = stored_summary(state, doc_id)
    generations = resources.generations()
    for _, index, embedder in generations.others():
        with generations.lock:
            index_summary(index, embedder, resources.bm25(), summary, doc_id)
    return index_summary(resources.index(), resources.embedder(), resources.bm25(), summary, doc_id)


@app.task(name="sluice.summary_index")
def summary_index(doc_id: str) -> str:
    """A summary that arrived from a Batch API job, indexed by the query worker."""
    return index_summary_of(resources.state(), doc_id)
