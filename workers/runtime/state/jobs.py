"""Bulk re-index jobs: their progress, cancellation and the one bulk slot."""

from __future__ import annotations

import json
from typing import Any

from workers.runtime.state import keys
from workers.runtime.state.base import Base, text


class Jobs(Base):
    def put_job(self, job: dict[str, Any], ttl_s: int = 7 * 86400) -> None:
        self.r.set(keys.job(job['id']), json.dumps(job), ex=ttl_s)
        self.r.zadd(keys.JOBS, {job["id"]: job["started_at"]})

    def job(self, job_id: str) -> dict[str, Any] | None:
        raw = self.r.get(keys.job(job_id))
        if raw is None:
            return None
        return {**json.loads(raw), "cancel_requested": bool(self.r.exists(keys.job_cancel(job_id)))}

    def jobs(self, limit: int = 10) -> list[dict[str, Any]]:
        ids = [text(i) for i in self.r.zrevrange(keys.JOBS, 0, limit - 1)]
        return [j for j in map(self.job, ids) if j]

    def cancel_job(self, job_id: str) -> None:
        self.r.set(keys.job_cancel(job_id), 1, ex=7 * 86400)

    def claim_bulk(self, job_id: str, ttl_s: int) -> str | None:
        """Hold the one bulk re-index slot (expires unless refreshed); returns the holder if taken."""
        key = keys.BULK
        if self.r.set(key, job_id, nx=True, ex=ttl_s):
            return None
        holder = self.r.get(key)
        if holder is None or text(holder) == job_id:
            self.r.set(key, job_id, ex=ttl_s)
            return None
        return text(holder)

    def bulk_job(self) -> str | None:
        raw = self.r.get(keys.BULK)
        return text(raw) if raw else None

    def release_bulk(self, job_id: str) -> None:
        if self.bulk_job() == job_id:
            self.r.delete(keys.BULK)


