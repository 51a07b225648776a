"""Per-process singletons, built on first use (after fork, never at import)."""

from __future__ import annotations

import os
import threading
from functools import cache
from typing import TYPE_CHECKING

from pipelines.embed import MAX_TOKENS
from workers.runtime.config import redis_url, settings
from workers.runtime.state import State, keys
from workers.runtime.state.base import text

if TYPE_CHECKING:
    from pipelines.chunk import Chunker
    from pipelines.embed import Embedder
    from pipelines.index import Index
    from pipelines.lexical import Bm25Encoder
    from pipelines.redact import Redactor
    from workers.runtime.generations import Generations

_lock = threading.Lock()


@cache
def state() -> State:
    url = redis_url()
    if not url:
        raise RuntimeError("no Redis configured: set REDIS_URL or start `sluice up`")
    return State.from_url(url, settings().artifact_ttl_s)


def embedder() -> Embedder:
    """The embedder of the live index generation: the index owner knows it, other processes read it
    from Redis (the index owner embeds again whatever reaches it in another space)."""
    if _generations.cache_info().currsize:
        return generations().live_embedder()
    live = state().r.get(keys.LIVE_BACKEND)
    return embedder_for(text(live) if live else settings().embed_backend)


@cache
def embedder_for(backend: str, threads: int | None = None) -> Embedder:
    """One embedder per runtime (and thread count) in a process; ``threads`` defaults to this process's share
    of the cores."""
    from pipelines.embed import Embedder

    config = settings()
    return Embedder(batch_size=config.embed_batch_size, backend=backend, threads=threads or _threads(),  # type: ignore[arg-type]
                    cache=config.model_cache)


def _threads() -> int:
    """Concurrent tasks (prefork children, or a query worker's threads) split the cores instead of
    each runtime grabbing all of them: on 2 busy cores a one-thread onnxruntime run costs ~16% less
    CPU per chunk than a two-thread one (58 vs 68 ms), and the cores are busy whenever it matters."""
    children = int(os.environ.get("SLUICE_WORKER_CONCURRENCY", "1"))
    return max(1, (os.cpu_count() or 1) // max(1, children))


@cache
def chunker() -> Chunker:
    from pipelines.chunk import Chunker

    config = settings()
    tokens = embedder_for(settings().embed_backend).count_tokens  # one tokenizer for every generation's model
    return Chunker(tokens, max_tokens=min(config.chunk_tokens, MAX_TOKENS), overlap=config.chunk_overlap_tokens)


@cache
def redactor() -> Redactor:
    from pipelines.redact import Redactor

    return Redactor(settings().pseudonym_secret.get_secret_value().encode())


@cache
def bm25() -> Bm25Encoder:
    from pipelines.lexical import Bm25Encoder

    return Bm25Encoder()


def index() -> Index:
    """The live generation's index; only the query worker calls this (Edge allows one owning process)."""
    return generations().live_index()


def generations() -> Generations:
    with _lock:
        return _generations()


@cache
def _generations() -> Generations:
    from workers.runtime.generations import Generations

    return Generations(settings(), state(), embedder_for, bm25())
