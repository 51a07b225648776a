"""Files as events: which files are documents, their content version, the events that bring the index in line with a folder."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path, PurePath

from schemas.events import Action, Event, content_version
from workers.sources.folder import inside

IGNORED_SUFFIXES = (".tmp", ".part", ".crdownload", ".swp", "~")
OUTSIDE = "0" * 64  # version of a file that links out of its folder: never read, refused at parse


def ignored(path: PurePath) -> bool:
    """Hidden files, editor and download temporaries never become documents."""
    return any(p.startswith(".") for p in path.parts) or path.name.endswith(IGNORED_SUFFIXES)


def file_hash(path: Path) -> str:
    with path.open("rb") as f:
        return content_version(iter(lambda: f.read(1 << 20), b""))


def folder_events(
    root: Path,
    source: str,
    indexed: dict[str, dict],
    tenant: str,
    paths: Iterable[Path] | None = None,
    within: Path | None = None,
) -> Iterator[Event]:
    """Events that bring the index in line with a folder (or its subfolder ``within``).

    With ``paths`` only those files are looked at and nothing is deleted. A file
    that links out of ``root`` is not read here; its event fails at parse with
    the reason, so the refusal shows in reports and dead letters.
    """
    within = within or root
    real_root = root.resolve()
    seen: set[str] = set()
    files = paths if paths is not None else (p for p in sorted(within.rglob("*")) if p.is_file())
    for path in files:
        rel = path.relative_to(root)
        if ignored(rel):
            continue
        version = file_hash(path) if inside(real_root, path) else OUTSIDE
        event = Event(source=source, key=rel.as_posix(), action=Action.create, version=version, tenant=tenant)
        seen.add(event.doc_id)
        if event.doc_id in indexed:
            event = event.model_copy(update={"action": Action.modify})
        yield event
    if paths is None:
        prefix = "" if within == root else within.relative_to(root).as_posix() + "/"
        for doc_id, info in indexed.items():
            key = info.get("key") or ""
            if doc_id not in seen and key.startswith(prefix) and key:
                yield Event(source=source, key=key, action=Action.delete, version="", tenant=tenant)
