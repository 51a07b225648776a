"""Shared fixtures: one embedder per test session; a real private sluice for integration tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipelines import runtime  # noqa: F401

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def embedder():
    from pipelines.embed import Embedder

    return Embedder()


@pytest.fixture(scope="session")
def bm25():
    from pipelines.lexical import Bm25Encoder

    return Bm25Encoder()


@pytest.fixture(scope="session")
def chunker(embedder):
    from pipelines.chunk import Chunker

    return Chunker(embedder.count_tokens, max_tokens=254, overlap=32)


os.environ.setdefault("SLUICE_PSEUDONYM_SECRET", "test-secret-not-for-production")
