"""What ``GET /documents/{id}`` answers: a document's status, summary and chunks as typed fields.

The status lives in a Redis hash whose values are all strings (numbers and lists JSON-encoded,
times as epoch seconds); a reader should not have to know that, so this model turns the hash into
ints, objects and ISO 8601 times, and the summary fields into one ``summary`` object.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

JSON_ENCODED = ("stages", "pii_counts", "deleted")  # written with json.dumps by the state (as_fields)
SUMMARY_FIELDS = ("kind", "method", "version")


class DocumentStatus(BaseModel):
    key: str | None = Field(default=None, description="The document's key in its source (path or object key).")
    source: str | None = Field(default=None, description="Where the document came from (folder or bucket).")
    tenant: str | None = None
    file_type: str | None = Field(default=None, description="Extension without dot, e.g. pdf.")
    content_hash: str | None = Field(default=None, description="Hash of the indexed version's bytes.")
    last_event: str | None = Field(default=None, description="Id of the last event that changed this document.")
    stages: list[str] = Field(default_factory=list, description="The stages its last version went through.")
    chunks: int | None = Field(default=None, description="Chunks in the index now.")
    chunks_embedded: int | None = Field(default=None, description="Chunks the last version embedded.")
    chunks_reused: int | None = Field(default=None, description="Chunks the last version reused unchanged.")
    chunks_deleted: int | None = Field(default=None, description="Chunks the last version removed.")
    pii_counts: dict[str, int] = Field(default_factory=dict, description="Redacted identifiers per entity type.")
    updated_at: datetime | None = Field(default=None, description="When this status last changed (UTC).")
    deleted: bool = False
    last_error: str | None = Field(default=None, description="Why the last version failed, if it did.")
    errors: dict[str, str] = Field(default_factory=dict, description="Follow-up step -> why it gave up.")

    @classmethod
    def of(cls, fields: dict[str, str]) -> DocumentStatus:
        """From the status hash as Redis keeps it; summary fields are left to ``DocumentSummary``."""
        known: dict[str, Any] = {k: json.loads(v) if k in JSON_ENCODED else v for k, v in fields.items() if k in cls.model_fields}
        errors = {k.removesuffix("_error"): v for k, v in fields.items()
                  if k.endswith("_error") and k not in ("last_error", "summary_error")}
        return cls.model_validate(known | {"errors": errors})


class DocumentSummary(BaseModel):
    text: str
    kind: str = Field(description="extractive (the document's own sentences) or batch (a model's).")
    method: str = ""
    model: str | None = None
    version: str = Field(default="", description="The content hash the summary was made from.")
    error: str | None = Field(default=None, description="Why the last summary attempt gave up, if it did.")

    @classmethod
    def of(cls, fields: dict[str, str]) -> DocumentSummary | None:
        if "summary" not in fields:
            return None
        return cls(text=fields["summary"], **{f: fields.get(f"summary_{f}", "") for f in SUMMARY_FIELDS},
                   model=fields.get("summary_model") or None, error=fields.get("summary_error") or None)


class DocumentChunk(BaseModel):
    position: int
    chunk_hash: str
    section: str | None = None
    page: int | None = None
    text: str
    updated_at: datetime | None = None

    @classmethod
    def of(cls, payload: dict[str, Any]) -> DocumentChunk:
        return cls.model_validate({k: payload.get(k) for k in cls.model_fields})


class DocumentView(BaseModel):
    doc_id: str
    status: DocumentStatus
    summary: DocumentSummary | None = Field(default=None, description="Its summary, once made.")
    chunks: list[DocumentChunk]
