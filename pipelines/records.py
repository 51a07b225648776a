"""One small JSON record kept beside an index: a file beside an Edge shard, a point of a tiny collection on a
Qdrant server (so every process that reads the server reads the same record).

The index's change journal (pipelines/visibility.py) and its generation registry
(pipelines/generations.py) are such records: small, rewritten whole, and they must
survive a crash as either the old value or the new one.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any, Protocol


class Record(Protocol):
    def load(self) -> Any | None: ...
    def save(self, value: Any) -> None: ...


class FileRecord:
    """JSON in a file, replaced atomically (write a sibling, fsync, rename over)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> Any | None:
        return json.loads(self.path.read_text()) if self.path.exists() else None

    def save(self, value: Any) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with tmp.open("w") as out:
            json.dump(value, out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, self.path)


class CollectionRecord:
    """JSON as the payload of one point in a one-dimensional collection (a single upsert replaces it)."""

    def __init__(self, client: Any, models: Any, collection: str) -> None:
        self.client, self.m, self.collection = client, models, collection
        self.id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"sluice-record:{collection}"))
        if not client.collection_exists(collection):
            client.create_collection(collection, vectors_config=models.VectorParams(size=1, distance=models.Distance.DOT))

    def load(self) -> Any | None:
        found = self.client.retrieve(self.collection, [self.id], with_payload=True)
        return json.loads(found[0].payload["json"]) if found else None

    def save(self, value: Any) -> None:
        self.client.upsert(self.collection, [self.m.PointStruct(id=self.id, vector=[0.0], payload={"json": json.dumps(value)})])
