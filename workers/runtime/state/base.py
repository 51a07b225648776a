"""What every part of ``State`` shares: the Redis client, the artifact TTL, this thread's memo."""

from __future__ import annotations

import json
import threading
from typing import Any

import redis
from redis.typing import EncodableT

TERMINAL = {"done", "unchanged", "deleted", "failed", "superseded"}


class Expired(KeyError):
    """An event or artifact Redis no longer holds (its TTL passed, or it was never written)."""


class Base:
    r: redis.Redis
    ttl: int
    _seen: threading.local

    def _memo(self, event_id: str) -> dict[str, Any]:
        """This thread's copies of one event's artifacts, written or read here: stages that run in
        place one after another (workers/runtime/dispatch.py) read them without a round trip. Redis stays
        the record; the copies last until the thread moves on to another event."""
        if getattr(self._seen, "event_id", None) != event_id:
            self._seen.event_id, self._seen.items = event_id, {}
        return self._seen.items  # type: ignore[no-any-return]


def as_fields(fields: dict[str, Any]) -> dict[EncodableT, EncodableT]:
    """Hash fields as Redis keeps them: strings as they are, anything else as JSON."""
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in fields.items()}


def text(reply: Any) -> str:
    """A Redis reply as text (the client answers bytes; redis-py types a reply ``bytes | str``)."""
    return reply.decode() if isinstance(reply, bytes) else str(reply)
