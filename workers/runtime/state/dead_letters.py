"""Dead letters (the stage, a readable reason and enough to retry) and the counters for /metrics."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from workers.runtime.state.base import P
from workers.runtime.state.events import Events


class DeadLetters(Events):
    def dead_letter(self, event_id: str, stage: str, error: str) -> str:
        info = self.event_info(event_id)
        event = json.loads(info.get("event", "{}"))
        letter = {
            "id": uuid.uuid4().hex[:12],
            "event_id": event_id,
            "doc_id": info.get("doc_id", ""),
            "key": event.get("key", ""),
            "source": event.get("source", ""),  # with key and tenant: enough to retry after the event expired
            "tenant": event.get("tenant", "default"),
            "action": event.get("action", ""),
            "stage": stage,
            "error": error,
            "time": time.time(),
        }
        pipe = self.r.pipeline()
        pipe.hset(f"{P}dlq", letter["id"], json.dumps(letter))
        pipe.incr(f"{P}count:dead_lettered:{stage}")  # for /metrics; survives `sluice dlq purge`
        pipe.execute()
        return letter["id"]

    def dead_letters(self) -> list[dict[str, Any]]:
        letters = [json.loads(v) for v in self.r.hvals(f"{P}dlq")]
        return sorted(letters, key=lambda d: d["time"])

    def dead_letter_by_id(self, letter_id: str) -> dict[str, Any] | None:
        raw = self.r.hget(f"{P}dlq", letter_id)
        return json.loads(raw) if raw else None

    def remove_dead_letters(self, *letter_ids: str) -> int:
        return int(self.r.hdel(f"{P}dlq", *letter_ids)) if letter_ids else 0

    def purge_dead_letters(self) -> int:
        return int(self.r.pipeline().hlen(f"{P}dlq").delete(f"{P}dlq").execute()[0])

    def counters(self) -> dict[str, int]:
        keys = sorted(self.r.scan_iter(f"{P}count:*"))
        values = self.r.mget(keys) if keys else []
        return {k.decode().removeprefix(f"{P}count:"): int(v or 0) for k, v in zip(keys, values)}

    def add_counter(self, name: str, amount: int) -> None:
        if amount:
            self.r.incrby(f"{P}count:{name}", amount)

