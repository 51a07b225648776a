"""What the ``sluice`` commands print for a person (``--json`` prints the data itself).

Plain functions from the data the commands already have to lines of text, so each command stays a
few lines and every view says the same thing the same way. Names from outside (file names, keys)
go through ``escaped``: a file name must not forge a line or recolour the terminal.
"""

from __future__ import annotations

from typing import Any

from schemas.search import SearchHit
from workers.runtime.logsafe import escaped

RETRIEVERS = {"dense": "meaning", "lexical": "words", "graph": "graph"}
STATUS_WORDS = {"done": "indexed", "unchanged": "unchanged", "deleted": "deleted", "failed": "FAILED",
                "superseded": "superseded by a newer change"}


def plural(n: int, word: str, many: str | None = None) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {many or word + 's'}"


# -- sluice search ---------------------------------------------------------------------------------


def hits(found: list[SearchHit], mode: str) -> list[str]:
    """Rank, relevance as a share of the best hit's score (fused scores have no unit), where, what matched."""
    if not found:
        return ["no results"]
    best = max(found[0].score, 1e-12)
    lines = [f"{plural(len(found), 'result')} ({mode}; relevance is relative to the best hit, raw scores: --json)"]
    for rank, h in enumerate(found, 1):
        where = escaped(h.key) + (f" p.{h.page}" if h.page else "") + (f" § {escaped(h.section)}" if h.section else "")
        where += f"  (summary: {h.summary_method})" if h.kind == "summary" else ""
        matched = " + ".join(RETRIEVERS.get(r, r) for r in h.retrievers)
        snippet = " ".join(h.text.split())[:200]
        lines.append(f"{rank:2}. {round(100 * h.score / best):3d}%  {where}  [{h.doc_id[:12]}]"
                     + (f"  matched: {matched}" if matched else ""))
        lines.append(f"    {snippet}")
    return lines


# -- sluice ingest ---------------------------------------------------------------------------------


def admitted(counts: dict[str, int]) -> str:
    """``sluice ingest`` without ``--wait``: how admission took each event, in words."""
    said = []
    if counts.get("queued"):
        said.append(f"queued {plural(counts['queued'], 'event')}")
    if counts.get("unchanged"):
        said.append(f"{counts['unchanged']} unchanged (already indexed, nothing to do)")
    if counts.get("duplicate"):
        said.append(f"{counts['duplicate']} already on its way (queued earlier, not queued again)")
    if counts.get("failed"):
        said.append(f"{counts['failed']} known to fail (not read again until it changes; see `sluice dlq list`)")
    return "; ".join(said) or "nothing to ingest"


def report(r: Any) -> list[str]:
    """``sluice ingest --wait``: what this run did (a ``workers.client.Report``)."""
    parts = [f"{n} {word}" for n, word in ((r.indexed, "indexed"), (r.unchanged, "unchanged"),
                                           (r.deleted, "deleted"), (len(r.failed), "failed")) if n]
    chunks = (f"{r.chunks_embedded} chunks embedded, {r.chunks_reused} reused, {r.chunks_deleted} deleted"
              if r.chunks_embedded or r.chunks_reused or r.chunks_deleted else "no chunks embedded")
    lines = [f"{plural(r.documents, 'document')}: {', '.join(parts) or 'nothing done'}; {chunks} in {r.elapsed_s:.1f}s"]
    if r.admitted.get("duplicate"):
        lines.append(f"  ({r.admitted['duplicate']} of them were already on their way when this run asked)")
    lines += [f"  failed {escaped(f['path'])} at {f['stage']}: {escaped(f['error'])}" for f in r.failed]
    return lines


def document_done(key: str, status: str, done: int, total: int) -> str:
    return f"  [{done}/{total}] {STATUS_WORDS.get(status, status)} {escaped(key)}"


# -- sluice status ---------------------------------------------------------------------------------


def _workers(alive: dict[str, list[str]]) -> list[str]:
    if not alive:
        return ["none answering (start `sluice up`, or `sluice worker` and `sluice query-worker`)"]
    return [f"{name}: {', '.join(queues)}" for name, queues in alive.items()]


def _index(index: Any) -> str:
    if not isinstance(index, dict):
        return str(index)
    line = f"{index.get('chunks', 0)} chunks; live generation {index.get('generation')} ({index.get('space')})"
    if index.get("building"):
        line += "; building " + ", ".join(f"{g} ({p})" for g, p in index["building"].items())
    return line + (f"\n              note: {index['note']}" if index.get("note") else "")


def _graph(graphs: Any) -> list[str]:
    if not isinstance(graphs, dict):
        return [str(graphs)]
    return [f"{tenant}: {plural(g.get('documents', 0), 'document')}, {plural(g.get('entities', 0), 'entity', 'entities')}"
            f", {plural(g.get('edges', 0), 'edge')}"
            f", {plural(g.get('relations', 0), 'relation')}"
            for tenant, g in graphs.items()]


def _supervised(children: Any) -> list[str]:
    if not isinstance(children, dict):
        return [str(children)]
    quiet = [name for name, c in children.items() if c.get("state") == "running" and not c.get("restarts")]
    lines = [f"running: {', '.join(quiet)}"] if quiet else []
    return lines + [f"{name}: {c.get('state')}" + (f", {plural(c['restarts'], 'restart')}" if c.get("restarts") else "")
                    for name, c in children.items() if name not in quiet]


def status(o: dict[str, Any]) -> list[str]:
    """``sluice status``: the overview of ``workers/query/health.py`` in a screenful, no document text."""
    def block(title: str, lines: list[str]) -> list[str]:
        return [f"{title:<13} {lines[0]}"] + [f"{'':<13} {line}" for line in lines[1:]]

    queues = o["queues"]
    busy = sum(queues.values())
    out = block("queues", ["  ".join(f"{q} {n}" for q, n in queues.items()) + f"   ({busy} waiting)"])
    if o.get("unconsumed_queues"):
        out += block("", [f"nobody consumes: {', '.join(o['unconsumed_queues'])} (work there waits)"])
    out += block("in flight", [f"{plural(o['in_flight'], 'event')} ({o.get('unacked', 0)} tasks unacknowledged)"])
    out += block("workers", _workers(o.get("workers") or {}))
    out += block("index", [_index(o.get("index"))])
    out += block("graph", _graph(o.get("graph")))
    letters = o["dead_letters"]
    by_stage = ", ".join(f"{s} {n}" for s, n in sorted(o.get("dead_letters_by_stage", {}).items()))
    out += block("dead letters", [f"{letters}" + (f" ({by_stage}): `sluice dlq list`" if letters else "")])
    errors = o.get("last_errors") or []
    out += block("last errors", [f"{escaped(str(e.get('key')))} at {e.get('stage')}: {escaped(str(e.get('error')))[:160]}"
                                 for e in reversed(errors)] or ["none"])
    if isinstance(o.get("summaries"), dict):
        sm = o["summaries"]
        out += block("summaries", [f"{sm.get('mode')}; {plural(sm.get('batches', 0), 'batch', 'batches')}"
                                   f", {sm.get('pending_requests', 0)} "
                                   f"pending, ${sm.get('cost_usd', 0):.2f} of ${sm.get('budget_usd', 0):.2f} budget"])
    out += block("processes", _supervised(o.get("supervisor")))
    return out + ["", "(sluice status --json for everything, sluice status DOC for one document)"]
