"""Everything sluice keeps in Redis, which may be lost without losing the index.

One class, one concern per module: events and admission (events.py), artifacts
passed between stages (artifacts.py), per-document status (documents.py), dead
letters and counters (dead_letters.py), webhook deliveries, step starts that
never finished and S3 ETags (deliveries.py), bulk re-index jobs (jobs.py).
"""

from __future__ import annotations

import threading

import redis

from workers.runtime.state.artifacts import Artifacts
from workers.runtime.state import keys
from workers.runtime.state.base import TERMINAL, Expired
from workers.runtime.state.dead_letters import DeadLetters
from workers.runtime.state.deliveries import Deliveries
from workers.runtime.state.documents import Documents
from workers.runtime.state.events import _PROGRESS
from workers.runtime.state.jobs import Jobs

__all__ = ["TERMINAL", "Expired", "keys", "State"]


class State(DeadLetters, Artifacts, Documents, Deliveries, Jobs):
    def __init__(self, client: redis.Redis, artifact_ttl_s: int = 86400) -> None:
        self.r = client
        self.ttl = artifact_ttl_s
        self._seen = threading.local()
        self._progress = client.register_script(_PROGRESS)

    @classmethod
    def from_url(cls, url: str, artifact_ttl_s: int = 86400) -> State:
        return cls(redis.Redis.from_url(url), artifact_ttl_s)
