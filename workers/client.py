"""Talking to a running sluice from the CLI, the API and benchmarks."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import redis

from schemas.events import Event
from schemas.search import SearchHit, SearchRequest
from schemas.settings import Settings
from workers.ingress.admission import Ingress
from workers.ingress.files import folder_events
from workers.runtime import dispatch
from workers.runtime.app import configure
from workers.runtime.config import reachable, redis_url
from workers.runtime.state import TERMINAL, State
from workers.sources.folder import folder_source, inside


log = logging.getLogger("sluice.client")
T = TypeVar("T")
OUTAGE = (redis.ConnectionError, redis.TimeoutError, dispatch.PublishFailed)
OUTAGE_PATIENCE_S = 600.0


class NotRunning(RuntimeError):
    pass


class OutsideFolder(FileNotFoundError):
    """A named file whose link leads out of the folder it was named under: not there to be indexed.

    A FileNotFoundError, so every caller that reports a missing path reports this one too."""


def connect(s: Settings) -> State:
    """State of the running sluice, or NotRunning with a plain explanation."""
    url = redis_url(s)
    if not url or not reachable(url):
        where = url or f"REDIS_URL (unset) or {s.data_dir / 'redis.url'} (missing)"
        raise NotRunning(f"no running sluice found: cannot reach Redis at {where}. Start one with `sluice up`.")
    configure(url, s)
    return State.from_url(url, s.artifact_ttl_s)


def ask(name: str, args: tuple[Any, ...] = (), timeout_s: float = 30.0, argsrepr: str | None = None) -> Any:
    """Ask the index owner (task ``sluice.<name>``, by name) and wait; a timed-out call leaves nothing pending."""
    from celery.exceptions import TimeoutError as NoAnswer

    result = dispatch.publish(name, args, argsrepr=argsrepr)
    try:
        return result.get(timeout=timeout_s)
    except NoAnswer:
        result.backend.remove_pending_result(result)
        raise
    finally:
        result.forget()  # read once: the answer (search hits are document text) leaves Redis now, not at expiry


def manifest(source: str | None, timeout_s: float = 30.0) -> dict[str, dict[str, Any]]:
    try:
        return ask("manifest", (source,), timeout_s)
    except Exception as exc:
        raise NotRunning(f"the query worker did not answer within {timeout_s:.0f}s ({type(exc).__name__})") from exc


def search(req: SearchRequest, timeout_s: float = 30.0) -> list[SearchHit]:
    hits = ask("search", (req.model_dump(mode="json"),), timeout_s, argsrepr="(<query>)")
    return [SearchHit.model_validate(h) for h in hits]


def why_no_path(source: str, target: str, known: Callable[[str], bool], look_up: str) -> str:
    """Why the graph holds no path between two entities: an end it does not know (``look_up`` says how to
    find its name, ``{}`` standing for it), or two entities that never occur together, directly or through
    others. The CLI and the API say the same."""
    unknown = [name for name in (source, target) if not known(name)]
    if unknown:
        return "; ".join(f"no entity {name!r} in the graph (try {look_up.format(name)})" for name in unknown)
    return f"no path from {source} to {target}: they are not connected through any chain of shared chunks"


def events_for(paths: list[Path], s: Settings) -> list[Event]:
    """Events for files and folders named on the command line; a folder is reconciled whole.

    Anything inside the inbox keeps the watcher's source and keys, so the same
    file is the same document however it arrives. The named path's own link is
    not followed before the root is chosen: a link out of that root is refused.
    """
    events: list[Event] = []
    inbox = s.inbox.resolve()
    for raw in paths:
        lexical = Path(os.path.abspath(raw))
        path = lexical.parent.resolve() / lexical.name  # links followed up to the name, not through it
        if not path.exists():
            raise FileNotFoundError(f"{raw}: no such file or folder")
        under_inbox = path.is_relative_to(inbox)
        root = inbox if under_inbox else path.resolve() if path.is_dir() else path.parent
        source = folder_source(root)
        if path.is_dir():
            events.extend(folder_events(root, source, manifest(source), s.tenant, within=path if under_inbox else root))
        elif not inside(root, path):
            raise OutsideFolder(f"{raw}: refused, it links to {path.resolve()}, outside {root}")
        else:
            events.extend(folder_events(root, source, {}, s.tenant, paths=[path]))
    return events


def through_outages(call: Callable[[], T], patience_s: float = OUTAGE_PATIENCE_S) -> T:
    """``call()``, tried again every second while Redis is unreachable, for up to ``patience_s``:
    a client that waits on events rides out a Redis restart as the workers do."""
    deadline = time.monotonic() + patience_s
    while True:
        try:
            return call()
        except OUTAGE as exc:
            if time.monotonic() > deadline:
                raise
            log.warning("Redis unreachable (%s); trying again", type(exc).__name__)
            time.sleep(1)


@dataclass
class Report:
    """What one ``ingest`` call did: every count is of this call's events only."""

    documents: int = 0
    indexed: int = 0
    unchanged: int = 0
    deleted: int = 0
    failed: list[dict[str, str]] = field(default_factory=list)
    chunks_embedded: int = 0
    chunks_reused: int = 0
    chunks_deleted: int = 0
    elapsed_s: float = 0.0
    # how admission took each event ('queued', 'unchanged', 'failed': known to fail, 'duplicate': already on its
    # way); not part of the JSON report (see ``summary``)
    admitted: dict[str, int] = field(default_factory=dict, repr=False)

    def summary(self) -> dict[str, Any]:
        """The JSON report of ``sluice ingest --json`` (README: "Using it")."""
        out = asdict(self)
        out.pop("admitted")
        return out


def ingest(
    st: State,
    s: Settings,
    events: list[Event],
    wait: bool,
    on_progress: Callable[[int, int], None] | None = None,
    on_document: Callable[[str, str], None] | None = None,
) -> Report:
    """Submit events through admission control; with ``wait``, block until each is finished.

    The report counts what this call's events did: an event admission settles at once (unchanged, known to
    fail) adds no chunk counts, whatever an earlier run of the same content recorded. ``on_document(key,
    status)`` hears each event as it finishes."""
    started = time.monotonic()
    ingress = Ingress(st, s)
    admitted = [through_outages(lambda: ingress.submit(e)) for e in events]
    report = Report(documents=len({e.doc_id for e in events}))
    for _, outcome in admitted:
        report.admitted[outcome] = report.admitted.get(outcome, 0) + 1
    if not wait:
        report.elapsed_s = time.monotonic() - started
        return report
    key_of = {eid: e.key for e, (eid, _) in zip(events, admitted)}
    settled = {eid for eid, outcome in admitted if outcome in ("unchanged", "failed")}
    ids = [eid for eid, _ in admitted]
    pending = list(dict.fromkeys(ids))
    infos: dict[str, dict[str, str]] = {}
    while pending:
        statuses = through_outages(lambda: st.statuses(pending))
        finished = [eid for eid, status in zip(pending, statuses) if status in TERMINAL]
        infos.update(through_outages(lambda: [(eid, st.event_info(eid)) for eid in finished]))
        done = set(finished)
        pending = [eid for eid in pending if eid not in done]
        for eid in finished:
            if on_document:
                on_document(key_of[eid], infos[eid].get("status", ""))
        if on_progress:
            on_progress(len(ids) - len(pending), len(ids))
        if pending:
            time.sleep(0.2)
    for eid, info in infos.items():
        status = info["status"]
        report.indexed += status == "done"
        report.unchanged += status == "unchanged"
        report.deleted += status == "deleted"
        if eid not in settled:  # only work this run's events caused counts as this run's
            for name in ("chunks_embedded", "chunks_reused", "chunks_deleted"):
                setattr(report, name, getattr(report, name) + int(info.get(name, 0) or 0))
        if status == "failed":
            key = Event.model_validate_json(info["event"]).key if "event" in info else key_of[eid]
            report.failed.append({"path": key, "stage": info.get("failed_stage", ""), "error": info.get("error", "")})
    report.elapsed_s = round(time.monotonic() - started, 3)
    return report
