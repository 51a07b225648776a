"""Search requests and results, shared by the API, the CLI and the query worker."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from enum import Enum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

# Payload keyword fields a request may filter on (anything else is a 422).
FILTERABLE = ("doc_id", "tenant", "source", "key", "file_type", "chunk_hash", "doc_version")
# A point stores every character prefix of its key up to this length, and every folder prefix beyond it
# (pipelines/upsert.key_prefixes): a longer prefix that is not a folder cannot be matched in the index.
PREFIX_CHARS = 128


def tenant_refusal(tenants: Sequence[str], tenant: str | None) -> str | None:
    """Why a question cannot be answered for ``tenant``, or None: a sluice that serves several
    tenants answers for one of them at a time (the one tenant check: API, graph and query worker)."""
    if not tenants:
        return None
    if not tenant:
        return "a tenant is required: this sluice serves several tenants"
    return None if tenant in tenants else "unknown tenant"


class Mode(str, Enum):
    hybrid = "hybrid"
    dense = "dense"
    lexical = "lexical"
    graph = "graph"  # chunks behind the query's entities and their graph neighbours
    mix = "mix"  # graph and hybrid fused by reciprocal rank


class Scope(str, Enum):
    """What a search looks through: chunk points (the default, as before), document summaries, or both.
    Mode ``graph`` always finds chunks (the graph knows chunks only); ``mix`` fuses them with this scope."""

    chunks = "chunks"
    summaries = "summaries"
    all = "all"


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt filter must fail loudly, not match everything

    q: str = Field(min_length=1, max_length=2000, description="What to look for.")
    k: int = Field(default=10, ge=1, le=100, description="How many results.")
    mode: Mode = Field(default=Mode.hybrid, description="hybrid (dense and BM25 fused), dense (meaning), lexical"
                       " (BM25 words), graph (chunks of the query's entities and their neighbours) or mix.")
    tenant: str | None = Field(default=None, description="Tenant to search; required when sluice serves several"
                               " (an API key bound to one tenant implies it).")
    doc_id: str | None = Field(default=None, description="Only this document's chunks.")
    file_type: str | None = Field(default=None, description="Extension without dot, e.g. pdf.")
    prefix: str | None = Field(default=None, description="Start of the document key: a folder (reports/2024/) or"
                               f" any first characters (water finds waterfall.txt); at most {PREFIX_CHARS}"
                               " characters unless it ends with /.")
    created_after: datetime | None = Field(default=None, description="Chunks first indexed at or after (ISO 8601).")
    created_before: datetime | None = Field(default=None, description="Chunks first indexed at or before (ISO 8601).")
    updated_after: datetime | None = Field(default=None, description="Chunks last written at or after (ISO 8601).")
    updated_before: datetime | None = Field(default=None, description="Chunks last written at or before (ISO 8601).")
    filters: dict[str, str] = Field(default_factory=dict, description="Any payload keyword field -> value.")
    group_by_document: bool = Field(default=False, description="Best chunk per document only.")
    scope: Scope = Field(default=Scope.chunks, description="chunks, summaries (one per document) or all.")

    @property
    def scoped_tenant(self) -> str | None:
        """The tenant the request is limited to, as a field or as a filter."""
        return self.tenant or self.filters.get("tenant")

    @field_validator("q")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("query must not be blank")
        return v

    @field_validator("filters")
    @classmethod
    def _known_fields(cls, v: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(v) - set(FILTERABLE))
        if unknown:
            raise ValueError(f"unknown filter field(s) {unknown}; filterable: {list(FILTERABLE)}")
        return v

    @field_validator("prefix")
    @classmethod
    def _indexed_prefix(cls, v: str | None) -> str | None:
        """A prefix is taken as given (``water`` finds ``waterfall.txt``); one the index cannot match is refused."""
        if v is not None and len(v) > PREFIX_CHARS and not v.endswith("/"):
            raise ValueError(f"a prefix longer than {PREFIX_CHARS} characters must end with / (a folder)")
        return v or None


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
    kind: Literal["chunk", "summary"] = "chunk"  # a summary hit's text is the document's summary
    summary_method: str | None = None  # how that summary was made (extractive or which model)


class SearchResponse(BaseModel):
    query: str
    mode: Mode
    hits: list[SearchHit]
    took_ms: float
