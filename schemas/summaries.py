"""Document summaries and the OpenAI Batch API bookkeeping behind them.

Every record here lives in Redis (it may be lost: a lost request only means
the extractive summary stays), and is JSON so an operator can read it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

Phase = Literal["single", "part", "combine"]


class Summary(BaseModel):
    """What a document's summary is, and how it was made (``kind`` says which, always)."""

    doc_id: str
    version: str  # the content hash summarised; a summary for older content is discarded
    text: str
    kind: Literal["extractive", "batch"]
    method: str  # e.g. "textrank: PageRank over sentence similarity (extractive, no model)"
    model: str | None = None
    prompt_version: str | None = None
    batch_id: str | None = None
    created_at: float = 0.0


class SummaryRequest(BaseModel):
    """One line of a batch: waiting, being submitted, or submitted.

    Most lines ask for a summary; ``kind="relations"`` lines ask for one chunk's typed
    relations as structured output (``response_format``), answered only with ``entities``.
    Both share one lifecycle, one price table and one budget (pipelines/batches.py).
    """

    custom_id: str  # doc id + content hash (+ part), so results map back without any other state
    doc_id: str
    version: str
    phase: Phase = "single"
    level: int = 0  # map-reduce round: parts of the text (0), parts of part summaries (1, ...)
    part: int = 0
    parts: int = 1
    messages: list[dict[str, str]]
    input_tokens: int  # estimate, for the budget
    attempts: int = 0
    state: Literal["pending", "submitting", "submitted"] = "pending"
    batch_id: str | None = None
    submission: str | None = None
    queued_at: float
    last_error: str = ""
    kind: Literal["summary", "relations"] = "summary"
    response_format: dict[str, Any] | None = None
    max_tokens: int | None = None  # None: the configured summary length
    chunk_hash: str | None = None  # relations: the chunk asked about ...
    entities: list[str] = Field(default_factory=list)  # ... and the only entity keys an answer may use


class BatchRecord(BaseModel):
    id: str
    input_file_id: str
    custom_ids: list[str]
    model: str
    state: Literal["open", "done"] = "open"
    status: str = "validating"  # the remote status, as last seen
    submitted_at: float
    finished_at: float | None = None
    polls: int = 0
    estimated_usd: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    succeeded: int = 0
    failed: int = 0
    unfinished: int = 0
    discarded: int = 0  # results for content that changed since
    rejected: int = 0  # relation answers that failed validation (never applied, never retried)
    errors: list[str] = Field(default_factory=list)


class Submission(BaseModel):
    """Written before ``batches.create``: a restart in between finds the batch again or re-queues."""

    id: str
    input_file_id: str
    custom_ids: list[str]
    started_at: float


class SummaryTotals(BaseModel):
    batches: int = 0
    open_batches: int = 0
    pending_requests: int = 0
    submitted_requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    committed_usd: float = 0.0  # cost so far plus the estimate of open batches: what the budget sees
    budget_usd: float | None = None
    refusals: int = 0
    last_refusal: str = ""
    given_up: int = 0
    relations_delivered: int = 0  # chunks whose validated relations went to the graph
    relations_rejected: int = 0  # relation answers rejected: bad JSON, schema, unknown entity, refusal
    last_rejection: str = ""
