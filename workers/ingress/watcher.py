"""Folder watcher: file-system events become document events once a file settles.

On start it reconciles the folder against the index (files added, changed or
removed while nobody watched are caught up), then follows watchdog events.
A file is read only after its size and mtime stop changing for a while, so a
half-copied file is never indexed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from schemas.events import Action, Event
from workers.ingress.admission import Ingress
from workers.ingress.files import folder_events, ignored
from workers.runtime.logsafe import escaped, shown
from workers.sources.folder import folder_source

log = logging.getLogger("sluice.watch")


class _Collector(FileSystemEventHandler):
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.changed: dict[Path, float] = {}
        self.deleted: set[Path] = set()
        self.deleted_dirs: set[Path] = set()

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.is_directory:
            # A folder moved out of the tree is reported as one directory delete,
            # with no events for the files inside it.
            if event.event_type == "deleted":
                with self.lock:
                    self.deleted_dirs.add(Path(str(event.src_path)))
            return
        now = time.monotonic()
        with self.lock:
            if event.event_type in ("deleted", "moved"):
                self.deleted.add(Path(str(event.src_path)))
                self.changed.pop(Path(str(event.src_path)), None)
            if event.event_type in ("created", "modified", "closed"):
                self.changed[Path(str(event.src_path))] = now
            if event.event_type == "moved":
                self.changed[Path(str(event.dest_path))] = now


class FolderWatcher:
    def __init__(
        self,
        root: Path,
        ingress: Ingress,
        tenant: str,
        settle_s: float,
        poll_s: float,
        manifest: Callable[[str], dict[str, dict[str, Any]]] | None = None,
    ) -> None:
        self.root = root.resolve()
        self.source = folder_source(self.root)
        self.ingress = ingress
        self.tenant = tenant
        self.settle_s = settle_s
        self.poll_s = poll_s
        self.collector = _Collector()
        self._sizes: dict[Path, tuple[int, float]] = {}
        self.stop_event = threading.Event()
        self.manifest = manifest  # what the index holds for a source; needed for folder deletes

    def reconcile(self, indexed: dict[str, dict]) -> int:
        n = 0
        for event in folder_events(self.root, self.source, indexed, self.tenant):
            self._submit(event)
            n += 1
        return n

    def _submit(self, event: Event) -> None:
        _, outcome = self.ingress.submit(event)
        log.info("%s %s: %s", event.action.value, shown(event.key), outcome)

    def run(self, indexed: dict[str, dict]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        observer = Observer()
        observer.schedule(self.collector, str(self.root), recursive=True)
        observer.start()
        try:
            log.info("reconciled %d files in %s; following changes", self.reconcile(indexed), escaped(str(self.root)))
            while not self.stop_event.wait(self.poll_s):
                self.flush()
        finally:
            observer.stop()
            observer.join(5)

    def flush(self) -> None:
        """Submit deletes at once and changes whose file has settled."""
        c = self.collector
        now = time.monotonic()
        with c.lock:
            deleted, c.deleted = c.deleted, set()
            dirs, c.deleted_dirs = c.deleted_dirs, set()
            due = [p for p, t in c.changed.items() if now - t >= self.settle_s]
        if dirs:
            deleted |= self._indexed_under(dirs)
        for path in deleted:
            if not path.exists() and path.is_relative_to(self.root) and not ignored(path.relative_to(self.root)):
                key = path.relative_to(self.root).as_posix()
                self._submit(Event(source=self.source, key=key, action=Action.delete, version="", tenant=self.tenant))
        for path in due:
            if self._settled(path):
                with c.lock:
                    c.changed.pop(path, None)
                if path.is_file():
                    for event in folder_events(self.root, self.source, {}, self.tenant, [path]):
                        if self.ingress.st.indexed_version(event.doc_id) is not None:
                            event = event.model_copy(update={"action": Action.modify})
                        self._submit(event)

    def _indexed_under(self, dirs: set[Path]) -> set[Path]:
        """Indexed files that lived under deleted folders (their own deletes are never reported)."""
        prefixes = tuple(
            d.relative_to(self.root).as_posix() + "/" for d in dirs if d != self.root and d.is_relative_to(self.root)
        )
        if not prefixes or self.manifest is None:
            return set()
        try:
            indexed = self.manifest(self.source)
        except Exception as exc:  # the query worker is away: try again on the next flush
            log.warning("cannot list indexed documents for deleted folders (%s); will retry", exc)
            with self.collector.lock:
                self.collector.deleted_dirs |= dirs
            return set()
        return {self.root / info["key"] for info in indexed.values() if (info.get("key") or "").startswith(prefixes)}

    def _settled(self, path: Path) -> bool:
        """Same size and mtime as at the previous look: the writer is done."""
        try:
            st = path.stat()
        except FileNotFoundError:
            self._sizes.pop(path, None)
            with self.collector.lock:
                self.collector.changed.pop(path, None)
            return False
        sig = (st.st_size, st.st_mtime)
        if self._sizes.get(path) == sig:
            self._sizes.pop(path, None)
            return True
        self._sizes[path] = sig
        return False
