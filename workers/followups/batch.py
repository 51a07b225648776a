"""Batch API summaries: the summariser over the Redis record store, and its beat tick.

``summary_tick`` (celery beat) submits, polls and collects batches under a Redis lock; all batch
state is in Redis, so any worker, restarted or not, carries on where the last tick stopped."""

from __future__ import annotations

import logging
from typing import Any

import redis

from pipelines.batches import BatchSummariser, Hooks
from pipelines.summarise import token_counter
from workers.followups import relations
from workers.followups.summaries import (
    FIELDS,
    RedisStore,
    batch_enabled,
    batch_config,
    note,
    openai_client,
    publish,
    summary_prompt,
)
from workers.runtime import resources
from workers.runtime.app import app
from workers.runtime.config import settings
from workers.runtime.state import State, keys

log = logging.getLogger("sluice.summaries")


def summariser(state: State, client: Any = None) -> BatchSummariser:
    hooks = Hooks(
        current_version=state.indexed_version,
        deliver=lambda s: publish(state, s),
        relations=lambda found: relations.deliver(state, found),
        give_up=lambda doc_id, version, reason: note(state, doc_id, version, summary_error=reason),
        scrub=lambda text: resources.redactor().redact(text).text,  # the redact stage, again
    )
    return BatchSummariser(RedisStore(state.r), batch_config(settings()), hooks, token_counter(), summary_prompt(), client)


def forget(state: State, doc_id: str) -> None:
    state.r.delete(keys.summary(doc_id))
    state.r.hdel(keys.document(doc_id), *FIELDS)
    summariser(state).forget(doc_id)


@app.task(name="sluice.summary_tick")
def summary_tick() -> dict[str, Any]:
    """Beat: recover, poll, collect, submit. One tick at a time across all workers."""
    if not batch_enabled():
        return {"enabled": False}
    state = resources.state()
    lock = state.r.lock(keys.SUMMARY_LOCK, timeout=max(120, int(settings().openai_timeout_s * 8)))
    if not lock.acquire(blocking=False):
        return {"busy": True}
    try:
        return summariser(state, openai_client()).tick()
    except Exception as exc:  # noqa: BLE001  (the endpoint is down or slow: the next tick carries on)
        log.warning("summary tick failed: %s: %s", type(exc).__name__, exc)
        return {"error": f"{type(exc).__name__}: {exc}"[:300]}
    finally:
        try:
            lock.release()
        except redis.exceptions.LockError:
            pass


def status(state: State) -> dict[str, Any]:
    """Summary mode and Batch API cost totals, for ``sluice status``."""
    totals = summariser(state).totals().model_dump()
    return {"mode": "batch" if batch_enabled() else "extractive only", "tokens": token_counter().name, **totals}
