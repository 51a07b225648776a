"""Webhook deliveries (idempotent retries), S3 sequencers and the ETag -> sha256 cache."""

from __future__ import annotations

import json
from typing import Any

from workers.runtime.state import keys
from workers.runtime.state.base import Base


class Deliveries(Base):
    def claim_delivery(self, delivery_id: str, digest: str, ttl_s: int) -> dict[str, Any] | None:
        """None for a new delivery id (now claimed); otherwise what is stored for it."""
        key = keys.delivery(delivery_id)
        if self.r.set(key, json.dumps({"digest": digest}), nx=True, ex=ttl_s):
            return None
        raw = self.r.get(key)
        return json.loads(raw) if raw else {"digest": digest}

    def answer_delivery(self, delivery_id: str, answer: dict[str, Any], ttl_s: int) -> None:
        self.r.set(keys.delivery(delivery_id), json.dumps(answer), ex=ttl_s)

    def release_delivery(self, delivery_id: str) -> None:
        """Forget a claimed delivery that was refused (e.g. 503), so the sender's retry runs."""
        self.r.delete(keys.delivery(delivery_id))

    def sequencer(self, doc_id: str) -> str | None:
        raw = self.r.get(keys.s3_sequencer(doc_id))
        return raw.decode() if raw else None

    def set_sequencer(self, doc_id: str, sequencer: str, ttl_s: int) -> None:
        self.r.set(keys.s3_sequencer(doc_id), sequencer, ex=ttl_s)

    def object_digest(self, doc_id: str, etag: str) -> str | None:
        """sha256 of an S3 object's bytes, if it was computed for this very ETag."""
        raw = self.r.hget(keys.s3_etags(doc_id), etag)
        return raw.decode() if raw else None

    def remember_digest(self, doc_id: str, etag: str, sha256: str) -> None:
        key = keys.s3_etags(doc_id)
        self.r.pipeline().delete(key).hset(key, etag, sha256).execute()  # only the newest ETag

