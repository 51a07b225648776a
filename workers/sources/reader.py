"""Reading an event's bytes from its source (the parse stage)."""

from __future__ import annotations

from pipelines.errors import too_large
from workers.sources.folder import folder_path
from workers.sources.s3 import S3, read_object


def read(source: str, key: str, max_bytes: int) -> bytes | None:
    """The object's bytes, or None when it no longer exists (a delete event will follow)."""
    if source.startswith(S3):
        return read_object(source, key, max_bytes)
    path = folder_path(source, key)
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise too_large("file", size, max_bytes)
        return path.read_bytes()
    except FileNotFoundError:
        return None
