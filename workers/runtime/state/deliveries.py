"""Webhook deliveries (idempotent retries), step deliveries that never finished, S3 sequencers and the
ETag -> sha256 cache."""

from __future__ import annotations

import json
from typing import Any

from workers.runtime.state import keys
from workers.runtime.state.base import Base, text


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

    def count_start(self, step: str, event_id: str) -> int:
        """Count a start of ``step`` for ``event_id``; how many earlier starts never finished. Each is a
        worker that died inside the step (killed for its memory, a crash): late acks deliver it again."""
        key = _started(step, event_id)
        pipe = self.r.pipeline(transaction=False)
        pipe.incr(key)
        pipe.expire(key, self.ttl)
        started, _ = pipe.execute()
        return int(started) - 1

    def count_finish(self, step: str, event_id: str) -> None:
        self.r.delete(_started(step, event_id))

    def sequencer(self, doc_id: str) -> str | None:
        raw = self.r.get(keys.s3_sequencer(doc_id))
        return text(raw) if raw else None

    def set_sequencer(self, doc_id: str, sequencer: str, ttl_s: int) -> None:
        self.r.set(keys.s3_sequencer(doc_id), sequencer, ex=ttl_s)

    def object_digest(self, doc_id: str, etag: str) -> str | None:
        """sha256 of an S3 object's bytes, if it was computed for this very ETag."""
        raw = self.r.hget(keys.s3_etags(doc_id), etag)
        return text(raw) if raw else None

    def remember_digest(self, doc_id: str, etag: str, sha256: str) -> None:
        key = keys.s3_etags(doc_id)
        pipe = self.r.pipeline()
        pipe.delete(key)
        pipe.hset(key, etag, sha256)
        pipe.execute()  # only the newest ETag



def _started(step: str, event_id: str) -> str:
    """Starts of one step for one event that have not finished yet (a counter with the artifact TTL)."""
    return f"{keys.PREFIX}started:{step}:{event_id}"
