"""``sluice bench generation``: building an int8 index generation from an fp32 one, on a BEIR corpus.

What a user pays for moving an index to another embedder: the build's time against the
first ingest's (nothing is parsed or redacted again, so at most half is the goal), the
chunks it embeds (exactly the indexed ones), and the search latency (p95) while it runs
against before it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from workers.bench.speed import _ingest_all, _percentile, beir_sluice, warm_up


def _queries(beir: Path, n: int) -> list[str]:
    with (beir / "queries.jsonl").open() as f:
        return [json.loads(line)["text"] for line, _ in zip(f, range(n))]


def _search_ms(queries: list[str]) -> list[float]:
    from schemas.search import SearchRequest
    from workers.client import search

    out = []
    for q in queries:
        started = time.perf_counter()
        search(SearchRequest(q=q, k=10))
        out.append(1000 * (time.perf_counter() - started))
    return out


def bench_generation(beir: Path, limit: int | None = None, queries: int = 50) -> dict[str, Any]:
    from workers.client import ask

    asked = _queries(beir, queries)
    with beir_sluice(beir, limit, embed_backend="onnx", followups="false") as (local, folder, documents, state):
        warm_up(local, state)
        _, ingest_s = _ingest_all(state, folder)
        before = _search_ms(asked)
        started = time.monotonic()
        made = ask("generation", ("create", {"backend": "onnx-int8"}), 60)
        during: list[float] = []
        while (g := ask("generation", ("list", {}), 60)["generations"][made["name"]])["status"] == "building":
            during += _search_ms(asked[:10])
        build_s = time.monotonic() - started
        live = ask("generation", ("list", {}), 60)["generations"]
    return {
        "documents": documents,
        "chunks": live["g1"]["chunks"],
        "status": g["status"],
        "first_ingest_s": round(ingest_s, 2),
        "build_s": round(build_s, 2),
        "build_to_ingest_ratio": round(build_s / ingest_s, 3),
        "chunks_embedded_by_build": g["embedded"],
        "built_chunks": live[made["name"]]["chunks"],
        "search_p95_ms_before": round(_percentile(before, 95), 1),
        "search_p95_ms_during": round(_percentile(during, 95), 1) if during else None,
        "searches_during": len(during),
    }
