"""Folder sources: ``folder:<absolute path>``; keys never escape their folder, nor do links in it."""

from __future__ import annotations

from pathlib import Path

from pipelines.errors import PermanentError
from workers.runtime.logsafe import escaped

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
