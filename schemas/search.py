"""Search requests and results, shared by the API, the CLI and the query worker."""

from __future__ import annotations

from enum import Enum

from pydantic import BaseModel, Field


class Mode(str, Enum):
    hybrid = "hybrid"
    dense = "dense"
    lexical = "lexical"


class SearchRequest(BaseModel):
    q: str = Field(min_length=1, max_length=2000)
    k: int = Field(default=10, ge=1, le=100)
    mode: Mode = Mode.hybrid
    tenant: str | None = None
    doc_id: str | None = None


class SearchHit(BaseModel):
    doc_id: str
    source: str
    key: str
    title: str | None = None
    section: str | None = None
    page: int | None = None
    position: int
    text: str
    score: float
    retrievers: list[str] = Field(default_factory=list)


class SearchResponse(BaseModel):
    query: str
    mode: Mode
    hits: list[SearchHit]
    took_ms: float
