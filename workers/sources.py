"""Where document bytes come from. Events name a source and a key; this reads them."""

from __future__ import annotations

from pathlib import Path

from pipelines.errors import PermanentError, too_large
from workers.logsafe import escaped

FOLDER = "folder:"


def folder_source(root: Path) -> str:
    return FOLDER + str(root.resolve())


def inside(root: Path, path: Path) -> bool:
    """``path``, every link followed, lies under ``root`` (a resolved folder)."""
    return path.resolve().is_relative_to(root)


def folder_path(source: str, key: str) -> Path:
    """The file behind (source, key); keys never escape their folder, nor do links in it."""
    if not source.startswith(FOLDER):
        raise PermanentError(f"unknown source kind: {source.split(':', 1)[0]}")
    root = Path(source.removeprefix(FOLDER))
    if not inside(root, root / key):
        raise PermanentError(f"refused: {escaped(key)} leads outside its folder {escaped(str(root))} (a link or '..')")
    return (root / key).resolve()


def read(source: str, key: str, max_bytes: int) -> bytes | None:
    """The object's bytes, or None when it no longer exists (a delete event will follow)."""
    if source.startswith("s3://"):
        from workers.s3 import read_object

        return read_object(source, key, max_bytes)
    path = folder_path(source, key)
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise too_large("file", size, max_bytes)
        return path.read_bytes()
    except FileNotFoundError:
        return None
