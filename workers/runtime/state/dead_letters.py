"""Dead letters (the stage, a readable reason and enough to retry) and the counters for /metrics."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from workers.runtime.state import keys
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
        pipe.hset(keys.DEAD_LETTERS, letter["id"], json.dumps(letter))
        pipe.incr(keys.counter(f"dead_lettered:{stage}"))  # for /metrics; survives `sluice dlq purge`
        pipe.execute()
        return letter["id"]

    def dead_letters(self) -> list[dict[str, Any]]:
        letters = [json.loads(v) for v in self.r.hvals(keys.DEAD_LETTERS)]
        return sorted(letters, key=lambda d: d["time"])

    def dead_letter_by_id(self, letter_id: str) -> dict[str, Any] | None:
        raw = self.r.hget(keys.DEAD_LETTERS, letter_id)
        return json.loads(raw) if raw else None

    def remove_dead_letters(self, *letter_ids: str) -> int:
        return int(self.r.hdel(keys.DEAD_LETTERS, *letter_ids)) if letter_ids else 0

    def purge_dead_letters(self) -> int:
        pipe = self.r.pipeline()
        pipe.hlen(keys.DEAD_LETTERS)
        pipe.delete(keys.DEAD_LETTERS)
        return int(pipe.execute()[0])

    def counters(self) -> dict[str, int]:
        names = sorted(self.r.scan_iter(keys.COUNTERS))
        values = self.r.mget(names) if names else []
        return {k.decode().removeprefix(keys.counter("")): int(v or 0) for k, v in zip(names, values)}

    def add_counter(self, name: str, amount: int) -> None:
        if amount:
            self.r.incrby(keys.counter(name), amount)

