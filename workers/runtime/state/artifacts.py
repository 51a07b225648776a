"""Content-addressed artifacts passed between stages (messages carry only ids)."""

from __future__ import annotations

from typing import Any

import numpy as np

from workers.runtime.state import keys
from workers.runtime.state.base import Base, Expired


class Artifacts(Base):
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

    def put_vectors(self, event_id: str, vectors: np.ndarray, space: str) -> None:
        self._put("vectors", event_id, vectors.astype(np.float32).tobytes())
        self._put("space", event_id, space)

    def get_vectors(self, event_id: str, dims: int) -> tuple[np.ndarray, str]:
        """The vectors and the space they are in (an embed worker may have used a generation switched away from)."""
        vectors = np.frombuffer(self._get("vectors", event_id), dtype=np.float32).reshape(-1, dims)
        return vectors, self._get("space", event_id).decode()

    def _put(self, kind: str, event_id: str, value: str | bytes) -> None:
        self.r.set(keys.artifact(kind, event_id), value, ex=self.ttl)
        self._memo(event_id)[kind] = value.encode() if isinstance(value, str) else value

    def _get(self, kind: str, event_id: str) -> bytes:
        memo = self._memo(event_id)
        if kind not in memo:
            raw = self.r.get(keys.artifact(kind, event_id))
            if raw is None:
                raise Expired(f"{kind} artifact of event {event_id} expired")
            memo[kind] = raw
        return memo[kind]  # type: ignore[no-any-return]

    def drop(self, kind: str, event_id: str) -> None:
        self.r.delete(keys.artifact(kind, event_id))
        self._memo(event_id).pop(kind, None)

    def drop_artifacts(self, event_id: str) -> None:
        kinds = ("redacted", "chunks", "plan", "vectors", "space")
        self.r.delete(*(keys.artifact(k, event_id) for k in kinds))
        memo = self._memo(event_id)
        for k in kinds:
            memo.pop(k, None)

