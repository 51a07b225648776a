"""Everything sluice keeps in Redis, which may be lost without losing the index.

Events and their progress, in-flight accounting for admission control,
content-addressed artifacts passed between stages (messages carry only ids),
per-(stage, event) idempotency marks, per-document status and dead letters.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any

import numpy as np
import redis

from schemas.events import Event
from workers.runtime.flow import STEPS

P = "sluice:"
TERMINAL = {"done", "unchanged", "deleted", "failed", "superseded"}
# A stage's progress mark, written only while its event is unfinished (checked and set atomically, so a
# late copy of an event can never set a finished one back to running); returns {latest event of the doc, marked}.
_PROGRESS = """
local status = redis.call('HGET', KEYS[1], 'status')
local latest = redis.call('GET', KEYS[2])
for i = 2, #ARGV do
  if status == ARGV[i] then return {latest, 0} end
end
redis.call('HSET', KEYS[1], 'stage', ARGV[1], 'status', 'running')
return {latest, 1}
"""


FOLLOWUP_ARTIFACTS = ("followup", "graphcontrib")  # kept from upsert until the last follow-up ends


class Expired(KeyError):
    """An event or artifact Redis no longer holds (its TTL passed, or it was never written)."""


class State:
    def __init__(self, client: redis.Redis, artifact_ttl_s: int = 86400) -> None:
        self.r = client
        self.ttl = artifact_ttl_s
        self._seen = threading.local()
        self._progress = client.register_script(_PROGRESS)

    def _memo(self, event_id: str) -> dict[str, Any]:
        """This thread's copies of one event's artifacts, written or read here: stages that run in
        place one after another (workers/dispatch.py) read them without a round trip. Redis stays
        the record; the copies last until the thread moves on to another event."""
        if getattr(self._seen, "event_id", None) != event_id:
            self._seen.event_id, self._seen.items = event_id, {}
        return self._seen.items  # type: ignore[no-any-return]

    @classmethod
    def from_url(cls, url: str, artifact_ttl_s: int = 86400) -> "State":
        return cls(redis.Redis.from_url(url), artifact_ttl_s)

    # -- events -------------------------------------------------------------
    def put_event(self, event: Event) -> bool:
        """Record an event and mark it latest for its document. False if already known."""
        key = f"{P}event:{event.event_id}"
        created = self.r.hsetnx(key, "event", event.model_dump_json())
        if created:
            self.r.hset(key, mapping={"status": "queued", "stage": "admit", "doc_id": event.doc_id})
        self.r.expire(key, self.ttl)
        self.r.set(f"{P}latest:{event.doc_id}", event.event_id)
        return bool(created)

    def reset_event(self, event: Event) -> None:
        """(Re)start an event from scratch: forget earlier step marks of the same id."""
        self.r.delete(*(f"{P}done:{step}:{event.event_id}" for step in STEPS))
        self.r.delete(f"{P}event:{event.event_id}")
        self.put_event(event)

    def event(self, event_id: str) -> Event:
        raw = self.r.hget(f"{P}event:{event_id}", "event")
        if raw is None:
            raise Expired(f"event {event_id} is unknown (expired or never admitted)")
        return Event.model_validate_json(raw)

    def event_info(self, event_id: str) -> dict[str, str]:
        return {k.decode(): v.decode() for k, v in self.r.hgetall(f"{P}event:{event_id}").items()}

    def statuses(self, event_ids: list[str]) -> list[str | None]:
        """Each event's status in one round trip (waiting clients poll thousands of events)."""
        pipe = self.r.pipeline(transaction=False)
        for event_id in event_ids:
            pipe.hget(f"{P}event:{event_id}", "status")
        return [v.decode() if v else None for v in pipe.execute()]

    def is_latest(self, event: Event) -> bool:
        latest = self.r.get(f"{P}latest:{event.doc_id}")
        return latest is None or latest.decode() == event.event_id

    def finish(self, event_id: str, status: str, release: bool = True, **fields: Any) -> None:
        """Terminal state for an event. It leaves the in-flight set unless follow-up work
        (graph, summary) still has to run for it: that work counts against the bounds too."""
        assert status in TERMINAL, status
        pipe = self.r.pipeline()
        pipe.hset(f"{P}event:{event_id}", mapping={"status": status, "finished_at": time.time(), **_str(fields)})
        if release:
            pipe.zrem(f"{P}inflight", event_id)
        pipe.incr(f"{P}count:{status}")
        pipe.execute()

    def release(self, event_id: str) -> None:
        """The event's follow-up work is over: its kept artifacts go and it no longer counts as in flight."""
        self.r.pipeline(transaction=False).delete(*(f"{P}art:{k}:{event_id}" for k in FOLLOWUP_ARTIFACTS)).zrem(
            f"{P}inflight", event_id).execute()
        memo = self._memo(event_id)
        for kind in FOLLOWUP_ARTIFACTS:
            memo.pop(kind, None)

    # -- admission ----------------------------------------------------------
    def admit(self, event_id: str) -> None:
        self.r.zadd(f"{P}inflight", {event_id: time.time()}, nx=True)

    def in_flight(self) -> int:
        return int(self.r.zcard(f"{P}inflight"))

    def queue_depth(self, queue: str) -> int:
        return int(self.r.llen(queue))

    # -- idempotency --------------------------------------------------------
    def mark_stage_done(self, stage: str, event_id: str, pipe: Any = None) -> None:
        (pipe or self.r).set(f"{P}done:{stage}:{event_id}", 1, ex=self.ttl)

    def begin_stage(self, stage: str, event_id: str) -> Event | str:
        """A stage's entry checks and its progress mark in two round trips: "duplicate",
        "superseded", or the event to work on (kept in the thread for the stages run in place)."""
        memo = self._memo(event_id)
        pipe = self.r.pipeline(transaction=False)
        pipe.exists(f"{P}done:{stage}:{event_id}")
        if "event" not in memo:
            pipe.hget(f"{P}event:{event_id}", "event")
        done, *raw = pipe.execute()
        if done:
            return "duplicate"  # and so are the stages it ran in place: it is marked after them
        if raw:
            if raw[0] is None:
                raise Expired(f"event {event_id} is unknown (expired or never admitted)")
            memo["event"] = Event.model_validate_json(raw[0])
        event: Event = memo["event"]
        latest, marked = self._progress(keys=[f"{P}event:{event_id}", f"{P}latest:{event.doc_id}"],
                                        args=[stage, *sorted(TERMINAL)])
        if not marked:
            return "duplicate"  # a late copy of a finished event: only re-admission (reset_event) reopens it
        return event if latest is None or latest.decode() == event_id else "superseded"

    # -- artifacts ----------------------------------------------------------
    def put_json(self, kind: str, event_id: str, value: str) -> None:
        self._put(kind, event_id, value)

    def get_json(self, kind: str, event_id: str) -> str:
        return self._get(kind, event_id).decode()

    def keep(self, kind: str, event_id: str, value: Any) -> None:
        """Hold ``value`` for the next stage in this thread only; never written to Redis (the
        parsed, unredacted document: a worker killed before redaction parses the file again)."""
        self._memo(event_id)[f"kept:{kind}"] = value

    def kept(self, kind: str, event_id: str) -> Any:
        return self._memo(event_id).pop(f"kept:{kind}", None)

    def put_vectors(self, event_id: str, vectors: np.ndarray) -> None:
        self._put("vectors", event_id, vectors.astype(np.float32).tobytes())

    def get_vectors(self, event_id: str, dims: int) -> np.ndarray:
        return np.frombuffer(self._get("vectors", event_id), dtype=np.float32).reshape(-1, dims)

    def _put(self, kind: str, event_id: str, value: str | bytes) -> None:
        self.r.set(f"{P}art:{kind}:{event_id}", value, ex=self.ttl)
        self._memo(event_id)[kind] = value.encode() if isinstance(value, str) else value

    def _get(self, kind: str, event_id: str) -> bytes:
        memo = self._memo(event_id)
        if kind not in memo:
            raw = self.r.get(f"{P}art:{kind}:{event_id}")
            if raw is None:
                raise Expired(f"{kind} artifact of event {event_id} expired")
            memo[kind] = raw
        return memo[kind]  # type: ignore[no-any-return]

    def drop(self, kind: str, event_id: str) -> None:
        self.r.delete(f"{P}art:{kind}:{event_id}")
        self._memo(event_id).pop(kind, None)

    def drop_artifacts(self, event_id: str) -> None:
        kinds = ("redacted", "chunks", "plan", "vectors")
        self.r.delete(*(f"{P}art:{k}:{event_id}" for k in kinds))
        memo = self._memo(event_id)
        for k in kinds:
            memo.pop(k, None)

    # -- documents ----------------------------------------------------------
    def indexed_version(self, doc_id: str) -> str | None:
        raw = self.r.get(f"{P}docver:{doc_id}")
        return raw.decode() if raw else None

    def record_indexed(self, doc_id: str, version: str, **fields: Any) -> None:
        """The document's current state replaces whatever was known before (no stale fields)."""
        pipe = self.r.pipeline()
        pipe.set(f"{P}docver:{doc_id}", version)
        pipe.delete(f"{P}doc:{doc_id}", f"{P}failed:{doc_id}")
        pipe.hset(f"{P}doc:{doc_id}", mapping=_str({"updated_at": time.time(), "content_hash": version, **fields}))
        pipe.execute()

    def note_document(self, doc_id: str, **fields: str) -> None:
        """Add fields to a document's status (a follow-up's error) without replacing it."""
        self.r.hset(f"{P}doc:{doc_id}", mapping=fields)

    def record_deleted(self, doc_id: str, **fields: Any) -> None:
        pipe = self.r.pipeline()
        pipe.delete(f"{P}docver:{doc_id}", f"{P}doc:{doc_id}", f"{P}failed:{doc_id}")
        pipe.hset(f"{P}doc:{doc_id}", mapping=_str({"updated_at": time.time(), "deleted": True, "chunks": 0, **fields}))
        pipe.execute()

    def record_failed(self, doc_id: str, version: str, stage: str, error: str, **fields: Any) -> None:
        """Remember that this content fails, so it is not re-parsed until it changes (or is retried)."""
        failure = {"version": version, "stage": stage, "error": error}
        pipe = self.r.pipeline()
        pipe.set(f"{P}failed:{doc_id}", json.dumps(failure))
        pipe.hset(f"{P}doc:{doc_id}", mapping=_str({"updated_at": time.time(), "last_error": error, **fields}))
        pipe.execute()

    def failure(self, doc_id: str) -> dict[str, str] | None:
        raw = self.r.get(f"{P}failed:{doc_id}")
        return json.loads(raw) if raw else None

    def document(self, doc_id: str) -> dict[str, str]:
        return {k.decode(): v.decode() for k, v in self.r.hgetall(f"{P}doc:{doc_id}").items()}

    def find_documents(self, needle: str) -> list[str]:
        """Document ids whose id starts with, or whose key contains, ``needle``."""
        found = []
        for key in self.r.scan_iter(f"{P}doc:*", count=500):
            doc_id = key.decode().removeprefix(f"{P}doc:")
            if doc_id.startswith(needle) or needle in (self.r.hget(key, "key") or b"").decode():
                found.append(doc_id)
        return found

    # -- dead letters -------------------------------------------------------
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

    # -- webhooks, S3 objects and re-index jobs ------------------------------
    def claim_delivery(self, delivery_id: str, digest: str, ttl_s: int) -> dict[str, Any] | None:
        """None for a new delivery id (now claimed); otherwise what is stored for it."""
        key = f"{P}delivery:{delivery_id}"
        if self.r.set(key, json.dumps({"digest": digest}), nx=True, ex=ttl_s):
            return None
        raw = self.r.get(key)
        return json.loads(raw) if raw else {"digest": digest}

    def answer_delivery(self, delivery_id: str, answer: dict[str, Any], ttl_s: int) -> None:
        self.r.set(f"{P}delivery:{delivery_id}", json.dumps(answer), ex=ttl_s)

    def release_delivery(self, delivery_id: str) -> None:
        """Forget a claimed delivery that was refused (e.g. 503), so the sender's retry runs."""
        self.r.delete(f"{P}delivery:{delivery_id}")

    def sequencer(self, doc_id: str) -> str | None:
        raw = self.r.get(f"{P}s3seq:{doc_id}")
        return raw.decode() if raw else None

    def set_sequencer(self, doc_id: str, sequencer: str, ttl_s: int) -> None:
        self.r.set(f"{P}s3seq:{doc_id}", sequencer, ex=ttl_s)

    def object_digest(self, doc_id: str, etag: str) -> str | None:
        """sha256 of an S3 object's bytes, if it was computed for this very ETag."""
        raw = self.r.hget(f"{P}s3etag:{doc_id}", etag)
        return raw.decode() if raw else None

    def remember_digest(self, doc_id: str, etag: str, sha256: str) -> None:
        key = f"{P}s3etag:{doc_id}"
        self.r.pipeline().delete(key).hset(key, etag, sha256).execute()  # only the newest ETag

    def put_job(self, job: dict[str, Any], ttl_s: int = 7 * 86400) -> None:
        self.r.set(f"{P}job:{job['id']}", json.dumps(job), ex=ttl_s)
        self.r.zadd(f"{P}jobs", {job["id"]: job["started_at"]})

    def job(self, job_id: str) -> dict[str, Any] | None:
        raw = self.r.get(f"{P}job:{job_id}")
        if raw is None:
            return None
        return {**json.loads(raw), "cancel_requested": bool(self.r.exists(f"{P}job:{job_id}:cancel"))}

    def jobs(self, limit: int = 10) -> list[dict[str, Any]]:
        ids = [i.decode() for i in self.r.zrevrange(f"{P}jobs", 0, limit - 1)]
        return [j for j in map(self.job, ids) if j]

    def cancel_job(self, job_id: str) -> None:
        self.r.set(f"{P}job:{job_id}:cancel", 1, ex=7 * 86400)

    def claim_bulk(self, job_id: str, ttl_s: int) -> str | None:
        """Hold the one bulk re-index slot (expires unless refreshed); returns the holder if taken."""
        key = f"{P}bulk"
        if self.r.set(key, job_id, nx=True, ex=ttl_s):
            return None
        holder = self.r.get(key)
        if holder is None or holder.decode() == job_id:
            self.r.set(key, job_id, ex=ttl_s)
            return None
        return holder.decode()

    def bulk_job(self) -> str | None:
        raw = self.r.get(f"{P}bulk")
        return raw.decode() if raw else None

    def release_bulk(self, job_id: str) -> None:
        if self.bulk_job() == job_id:
            self.r.delete(f"{P}bulk")


def _str(fields: dict[str, Any]) -> dict[str, str]:
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in fields.items()}
