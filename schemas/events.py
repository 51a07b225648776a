"""Events: every observed change, with an id that is stable for the same change."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import datetime, timezone
from enum import Enum

from pydantic import BaseModel, Field, computed_field


class Action(str, Enum):
    create = "create"
    modify = "modify"
    delete = "delete"
    reindex = "reindex"


def content_version(blocks: Iterable[bytes]) -> str:
    """An event's ``version``: sha256 of the raw bytes, fed block by block (the one content hash of
    files, objects and parsed bytes, so every path that sees the same bytes names the same version)."""
    h = hashlib.sha256()
    for block in blocks:
        h.update(block)
    return h.hexdigest()


def document_id(source: str, key: str) -> str:
    """Stable id of a document: the same object in the same source is the same document."""
    return hashlib.sha256(f"{source}\x00{key}".encode()).hexdigest()[:32]


class Event(BaseModel):
    """A change to one document. ``version`` is the content hash (or deletion marker)."""

    source: str  # e.g. "folder:/abs/inbox" or "s3://bucket"
    key: str  # object key / path relative to the source
    action: Action
    version: str  # sha256 of the raw bytes, or "" for deletes
    tenant: str = "default"
    force: bool = False
    observed_at: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))

    @computed_field  # type: ignore[prop-decorator]
    @property
    def doc_id(self) -> str:
        return document_id(self.source, self.key)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def event_id(self) -> str:
        """Same source, key, version (and force) -> same id, whoever observed it and how.

        The action is not part of it: the watcher calls a change ``modify`` that ``sluice ingest``
        calls ``create`` and a webhook ``reindex``, yet it is one change. A delete is its own
        change already: its version is empty."""
        raw = f"{self.source}\x00{self.key}\x00{self.version}\x00{int(self.force)}"
        return hashlib.sha256(raw.encode()).hexdigest()[:32]
