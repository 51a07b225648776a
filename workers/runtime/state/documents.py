"""Per-document status: the indexed version, what the document went through, its failures."""

from __future__ import annotations

import json
import time
from typing import Any

from workers.runtime.state import keys
from workers.runtime.state.base import Base, as_fields, text


class Documents(Base):
    def indexed_version(self, doc_id: str) -> str | None:
        raw = self.r.get(keys.document_version(doc_id))
        return text(raw) if raw else None

    def record_indexed(self, doc_id: str, version: str, **fields: Any) -> None:
        """The document's current state replaces whatever was known before (no stale fields)."""
        pipe = self.r.pipeline()
        pipe.set(keys.document_version(doc_id), version)
        pipe.delete(keys.document(doc_id), keys.document_failure(doc_id))
        pipe.hset(keys.document(doc_id), mapping=as_fields({"updated_at": time.time(), "content_hash": version, **fields}))
        pipe.execute()

    def note_document(self, doc_id: str, **fields: str) -> None:
        """Add fields to a document's status (a follow-up's error) without replacing it."""
        self.r.hset(keys.document(doc_id), mapping=as_fields(fields))

    def record_deleted(self, doc_id: str, **fields: Any) -> None:
        pipe = self.r.pipeline()
        pipe.delete(keys.document_version(doc_id), keys.document(doc_id), keys.document_failure(doc_id))
        pipe.hset(keys.document(doc_id), mapping=as_fields({"updated_at": time.time(), "deleted": True, "chunks": 0, **fields}))
        pipe.execute()

    def record_failed(self, doc_id: str, version: str, stage: str, error: str, **fields: Any) -> None:
        """Remember that this content fails, so it is not re-parsed until it changes (or is retried)."""
        failure = {"version": version, "stage": stage, "error": error}
        pipe = self.r.pipeline()
        pipe.set(keys.document_failure(doc_id), json.dumps(failure))
        pipe.hset(keys.document(doc_id), mapping=as_fields({"updated_at": time.time(), "last_error": error, **fields}))
        pipe.execute()

    def failure(self, doc_id: str) -> dict[str, str] | None:
        raw = self.r.get(keys.document_failure(doc_id))
        return json.loads(raw) if raw else None

    def document(self, doc_id: str) -> dict[str, str]:
        return {text(k): text(v) for k, v in self.r.hgetall(keys.document(doc_id)).items()}

    def find_documents(self, needle: str) -> list[str]:
        """Document ids whose id starts with, or whose key contains, ``needle``."""
        found = []
        for key in self.r.scan_iter(keys.DOCUMENTS, count=500):
            doc_id = text(key).removeprefix(keys.document(""))
            if doc_id.startswith(needle) or needle in text(self.r.hget(key, "key") or b""):
                found.append(doc_id)
        return found

