"""What a search may see while a document changes: the whole old version or the whole new one.

A change hides the new version's point ids (the version is part of a chunk's point id)
and waits for the searches that began before, writes them, then in one step shows them
and hides the old version's points, waits again for the searches that began before that
step, and only then deletes the old points. Hiding is a ``must_not has_id`` condition
inside every read, so no reader ever sees both versions or neither.

A journal records each change until it ends (a file beside an Edge shard, a small
collection on a Qdrant server), so an index opened after a crash rolls a change that
had not flipped back (its hidden points go) and finishes one that had (the old points
go): nothing invisible is left behind.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from pipelines.records import Record


@dataclass(frozen=True)
class Change:
    """One document going from its current points (``stale``) to a new set (``fresh``: ids not there yet)."""

    doc_id: str
    fresh: frozenset[str]
    stale: frozenset[str]
    flipped: bool = False

    def hidden(self) -> frozenset[str]:
        return self.stale if self.flipped else self.fresh

    def as_json(self) -> dict[str, Any]:
        return {"doc_id": self.doc_id, "fresh": sorted(self.fresh), "stale": sorted(self.stale), "flipped": self.flipped}

    @classmethod
    def of(cls, raw: dict[str, Any]) -> Change:
        return cls(raw["doc_id"], frozenset(raw["fresh"]), frozenset(raw["stale"]), bool(raw["flipped"]))


class Visibility:
    """The hidden point ids of the changes in flight, and the readers that may still see the old ones."""

    def __init__(self, journal: Record, grace_s: float = 0.0, shared: bool = False) -> None:
        self.journal = journal
        # A Qdrant server may have readers in other processes: they read the journal at every read
        # (``shared``), and the old points outlive the flip by ``grace_s`` for the reads they began before it.
        self.grace_s = grace_s
        self.shared = shared
        self._changes = self._load()
        self._hidden = self._union()
        self._cond = threading.Condition()
        self._epoch = 0
        self._readers: dict[int, int] = {}

    def _load(self) -> dict[str, Change]:
        return {raw["doc_id"]: Change.of(raw) for raw in self.journal.load() or []}

    def _union(self) -> frozenset[str]:
        return frozenset().union(*(c.hidden() for c in self._changes.values()))

    def unfinished(self) -> list[Change]:
        """Changes a crash interrupted (at open) or in flight now."""
        with self._cond:
            return list(self._changes.values())

    @contextmanager
    def reading(self) -> Iterator[frozenset[str]]:
        """The ids a read must leave out; the read counts as running until the block ends."""
        elsewhere = frozenset().union(*(c.hidden() for c in self._load().values())) if self.shared else frozenset()
        with self._cond:
            epoch, hidden = self._epoch, self._hidden | elsewhere
            self._readers[epoch] = self._readers.get(epoch, 0) + 1
        try:
            yield hidden
        finally:
            with self._cond:
                self._readers[epoch] -= 1
                if not self._readers[epoch]:
                    del self._readers[epoch]
                self._cond.notify_all()

    def _set(self, change: Change | None, doc_id: str) -> None:
        if change is None:
            self._changes.pop(doc_id, None)
        else:
            self._changes[doc_id] = change
        self.journal.save([c.as_json() for c in self._changes.values()])
        self._hidden = self._union()

    def begin(self, change: Change) -> None:
        """Hide ``change.fresh`` before any of it is written (and outlast the reads that began unaware of it)."""
        self._publish(change)

    def flip(self, doc_id: str) -> None:
        """Show the new points and hide the old ones in one step; return once no search that began
        before the step is still running (after that the old points may go)."""
        with self._cond:
            change = self._changes[doc_id]
        self._publish(Change(doc_id, change.fresh, change.stale, flipped=True))

    def _publish(self, change: Change, timeout_s: float = 60.0) -> None:
        """Make ``change`` what readers see from now on, then wait for the reads that saw what was before."""
        with self._cond:
            self._set(change, change.doc_id)
            self._epoch += 1
            now, deadline = self._epoch, time.monotonic() + timeout_s
            while any(e < now for e in self._readers) and time.monotonic() < deadline:
                self._cond.wait(timeout=max(0.0, deadline - time.monotonic()))
        if self.grace_s:
            time.sleep(self.grace_s)

    def end(self, doc_id: str) -> None:
        with self._cond:
            self._set(None, doc_id)
