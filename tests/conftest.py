"""Shared fixtures: one embedder per test session; a real private sluice for integration tests."""

from __future__ import annotations

import inspect
import os
import re
import time
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import TypeVar

import pytest

from pipelines import runtime  # noqa: F401

T = TypeVar("T")


def wait_for(check: Callable[[], T], what: str = "the condition", timeout_s: float = 60.0, every_s: float = 0.2,
             context: Callable[[], str] | None = None) -> T:
    """Poll ``check`` until it returns something truthy, and return that; after ``timeout_s`` fail,
    saying what was awaited (and ``context()``, e.g. the tail of a log)."""
    deadline = time.monotonic() + timeout_s
    while not (found := check()):
        if time.monotonic() > deadline:
            extra = f"\n{context()}" if context else ""
            raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}{extra}")
        time.sleep(every_s)
    return found


# What makes a test an integration test (directly, through a fixture or a helper of its module): it starts
# Redis, workers or a process, builds a model of its own (an ONNX export, torch), or reads the shared data.
STARTS_SOMETHING = re.compile(
    r"\bSluice\(|LocalSluice|EmbeddedRedis|start_workers|subprocess\.|\bcli\(|Embedder\(backend=|SentenceTransformer\("
    r"|\bshared_docs\b")


@cache
def _starts_something(func: object) -> bool:
    try:
        return bool(STARTS_SOMETHING.search(inspect.getsource(func)))  # type: ignore[arg-type]
    except (OSError, TypeError):
        return False


def _helpers(func: object) -> list[object]:
    """The module's own functions and classes a test or fixture calls (one level deep)."""
    code, names = getattr(func, "__code__", None), getattr(func, "__globals__", {})
    found = [names.get(n) for n in (code.co_names if code else ())]
    return [f for f in found if inspect.isfunction(f) or inspect.isclass(f)
            if getattr(f, "__module__", None) == getattr(func, "__module__", "")]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test ``unit`` or ``integration`` (``pytest -m unit`` runs in well under a minute)."""
    for item in items:
        funcs = [getattr(item, "function", None)]
        funcs += [d.func for defs in item._fixtureinfo.name2fixturedefs.values() for d in defs]  # type: ignore[attr-defined]
        funcs += [h for f in funcs for h in _helpers(f)]
        heavy = item.get_closest_marker("integration") or any(_starts_something(f) for f in funcs if f)
        item.add_marker("integration" if heavy else "unit")
    # Two xdist workers take one test file at a time, in this order: the longest files first, so neither
    # worker is left with a long one at the end (order within a file is kept).
    items.sort(key=lambda item: _LONGEST_FIRST.get(item.path.relative_to(_TESTS).as_posix(), len(_LONGEST_FIRST)))


_TESTS = Path(__file__).resolve().parent
# Files of a minute or more in the last measured run (--durations), longest first.
_LONGEST_FIRST = {name: rank for rank, name in enumerate((
    "test_pipeline.py", "workers/cli/test_cli.py", "workers/runtime/test_redis_outage.py",
    "workers/stages/test_poison.py", "workers/stages/test_atomic_swap.py", "workers/runtime/test_redelivery.py",
    "workers/followups/test_summaries.py", "workers/query/test_generation_commands.py",
    "workers/stages/test_embed_switch.py", "workers/cli/test_bench_chaos.py", "workers/cli/test_operations.py",
    "workers/query/test_generation_server.py", "workers/ingress/test_watcher.py",
    "workers/followups/test_relations.py", "pipelines/test_visibility.py",
))}


@pytest.fixture(scope="module")
def sluice(tmp_path_factory):
    """A private sluice of default settings with every worker running, one per test module."""
    from harness import Sluice

    running = Sluice(tmp_path_factory.mktemp("sluice"))
    running.start_workers()
    yield running
    running.close()


@pytest.fixture(scope="module")
def fp32_sluice(tmp_path_factory):
    """A private sluice whose index is built with the fp32 embedder (``SLUICE_EMBED_BACKEND=onnx``)."""
    from harness import Sluice

    running = Sluice(tmp_path_factory.mktemp("fp32"), embed_backend="onnx")
    running.start_workers()
    yield running
    running.close()


@pytest.fixture(scope="session")
def embedder():
    from pipelines.embed import Embedder

    return Embedder(backend="onnx")  # the fp32 reference the tests compare against (the default is int8)


@pytest.fixture(scope="session")
def bm25():
    from pipelines.lexical import Bm25Encoder

    return Bm25Encoder()


@pytest.fixture(scope="session")
def chunker(embedder):
    from pipelines.chunk import Chunker

    return Chunker(embedder.count_tokens, max_tokens=254, overlap=32)


SHARED_DOCS = Path(__file__).resolve().parents[2] / "shared" / "data" / "docs"


@pytest.fixture(scope="session")
def shared_docs() -> Path:
    """The reference files beside the repository (../shared/data/docs). Tests that need them say so
    in their name; a fresh clone without them skips those, CI (``CI`` set) fails instead."""
    if not SHARED_DOCS.is_dir():
        message = f"needs the reference data in {SHARED_DOCS}"
        if os.environ.get("CI"):
            pytest.fail(message + " (CI must have it)")
        pytest.skip(message)
    return SHARED_DOCS


@pytest.fixture
def eager_state(tmp_path, monkeypatch):
    """The step runtime in this process: a private Redis, Celery tasks run eagerly (retries too),
    two retries with a short backoff. Yields the State."""
    from workers.launcher.embedded_redis import EmbeddedRedis
    from workers.runtime import config, resources
    from workers.runtime.app import app, configure

    app.loader.import_default_modules()  # registers every step, as a worker does at start
    redis = EmbeddedRedis(tmp_path / "redis", persist=False).start()
    monkeypatch.setenv("REDIS_URL", redis.url)
    monkeypatch.setenv("SLUICE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("SLUICE_MAX_RETRIES", "2")
    monkeypatch.setenv("SLUICE_RETRY_BACKOFF_S", "0.01")
    config.settings.cache_clear()
    resources.state.cache_clear()
    configure(redis.url, config.settings())
    app.conf.task_always_eager = True
    yield resources.state()
    app.conf.task_always_eager = False
    resources.state.cache_clear()
    config.settings.cache_clear()
    redis.stop()


os.environ.setdefault("SLUICE_PSEUDONYM_SECRET", "test-secret-not-for-production")
