"""One view of a running sluice's health, for ``sluice status`` (and the sizes for ``/metrics``).

Reads Redis and asks the live processes: which workers answer and which
queues nobody consumes, what is in flight, what failed lately, how big the
index and the graph are. Every question to a process has a short timeout, so
a dead query worker shows as such instead of hanging the command.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from workers.runtime import dispatch
from workers.runtime.app import app
from workers.runtime.config import SUPERVISOR_FILE, settings
from workers.runtime.flow import ALL_QUEUES
from workers.runtime.state import State

log = logging.getLogger("sluice.health")


def query_worker_sizes(timeout_s: float = 2.0) -> tuple[dict[str, Any] | None, dict[str, dict[str, Any]]]:
    """(index answer, {tenant: graph stats}) from the query worker; (None, {}) when it does not answer in time."""
    tenants: list[str | None] = [*settings().tenants] or [None]
    deadline = time.monotonic() + timeout_s
    pending = [("index", dispatch.publish("ping"))]
    pending += [(t or "default", dispatch.publish("graph_query", ("stats", {"tenant": t}))) for t in tenants]
    answers: dict[str, Any] = {}
    for name, result in pending:
        try:
            answers[name] = result.get(timeout=max(0.05, deadline - time.monotonic()))
            result.forget()  # read once: nothing left in the result backend
        except Exception as exc:  # timeout or a worker-side error: report it as not answering
            result.backend.remove_pending_result(result)
            log.debug("query worker did not answer %s: %s", name, exc)
    return answers.pop("index", None), answers


def workers(timeout_s: float = 1.0) -> dict[str, list[str]]:
    """Workers that answered, with the queues each consumes."""
    replies = app.control.inspect(timeout=timeout_s).active_queues() or {}
    return {name: sorted(q["name"] for q in queues) for name, queues in sorted(replies.items())}


def overview(st: State) -> dict[str, Any]:
    letters = st.dead_letters()
    by_stage: dict[str, int] = {}
    for d in letters:
        by_stage[d["stage"]] = by_stage.get(d["stage"], 0) + 1
    alive = workers()
    consumed = {q for qs in alive.values() for q in qs}
    index, graphs = query_worker_sizes()
    in_flight, depths = st.occupancy(ALL_QUEUES)
    return {
        "queues": depths,
        "unconsumed_queues": [q for q in ALL_QUEUES if q not in consumed],  # work there waits for nobody
        "workers": alive,
        "in_flight": in_flight,
        "unacked": int(st.r.hlen("unacked")),
        "dead_letters": len(letters),
        "dead_letters_by_stage": by_stage,
        "index": index or "query worker not answering",  # chunks, live generation and space, builds running
        "graph": graphs or "query worker not answering",
        "counters": st.counters(),
        "last_errors": [{k: d.get(k) for k in ("id", "key", "stage", "error")} for d in letters[-5:]],
        "supervisor": supervised(),
    }


def supervised() -> dict[str, Any] | str:
    """The processes ``sluice up`` keeps running on this machine, with their restarts."""
    path = settings().data_dir / SUPERVISOR_FILE
    try:
        return json.loads(path.read_text())["children"]  # type: ignore[no-any-return]
    except (OSError, ValueError, KeyError):
        return "no `sluice up` on this machine"
