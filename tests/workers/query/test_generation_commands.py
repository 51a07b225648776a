"""Index generations through the real workers and the `sluice generation` commands, as a user runs them.

A private sluice starts on the fp32 embedder (``SLUICE_EMBED_BACKEND=onnx``); an int8 generation is
built from the indexed chunks while documents change and searches run, compared, switched to, rolled
back and dropped. Searches never fail or come back empty; no file is parsed again for the build.
"""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path


from harness import SAMPLES, Sluice, cli
from live_searches import LiveSearches

QUERY = "how often are the sand filters cleaned"


def _sluice(sluice: Sluice, *args: str, ok: bool = True) -> str:
    result = cli(sluice.env, "generation", *args, cwd=sluice.root, timeout=600)
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    assert (result.returncode == 0) == ok, result.stdout + result.stderr
    return result.stdout + result.stderr


def _listed(sluice: Sluice) -> dict:
    return json.loads(_sluice(sluice, "list", "--json"))


def _ingest(paths: list[Path]) -> None:
    from workers import client
    from workers.runtime.config import settings

    report = client.ingest(client.connect(settings()), settings(), client.events_for(paths, settings()), wait=True)
    assert report.failed == [], report


def _parses() -> int:
    from workers import client
    from workers.runtime.config import settings
    from workers.runtime.telemetry import runs

    return sum(n for (task, _), n in runs(client.connect(settings()).r).items() if task == "parse")


def test_an_int8_generation_is_built_beside_live_traffic_switched_to_and_back(fp32_sluice):
    sluice = fp32_sluice
    from schemas.search import Mode, SearchRequest
    from workers.client import search

    docs = sluice.root / "docs"
    shutil.copytree(SAMPLES, docs)
    _ingest([docs])
    first = _listed(sluice)
    assert first["live"] == "g1" and first["generations"]["g1"]["space"] == "all-MiniLM-L6-v2"
    chunks = first["generations"]["g1"]["chunks"]

    with LiveSearches(QUERY) as searches:
        parsed = _parses()
        build = threading.Thread(target=_sluice, args=(sluice, "create", "--embed-backend", "onnx-int8"))
        build.start()
        (docs / "late.md").write_text("# Late note\n\nThe brackwater sluice gate was greased on Tuesday.\n")
        _ingest([docs / "late.md"])  # written while the build runs: it must reach both generations
        build.join()
        assert _parses() == parsed + 1, "the build parsed files again"
        built = _listed(sluice)["generations"]
        assert built["g2"]["status"] == "ready" and built["g2"]["space"] == "all-MiniLM-L6-v2-int8"
        assert built["g2"]["chunks"] == built["g1"]["chunks"] > chunks

        _sluice(sluice, "switch", ok=False)  # not compared yet: refused
        assert "passed" in _sluice(sluice, "compare")
        assert "live: g2" in _sluice(sluice, "switch")
        (docs / "late.md").write_text("# Late note\n\nThe brackwater sluice gate was greased and painted.\n")
        _ingest([docs / "late.md"])  # after the switch: both generations still get every change
        after = _listed(sluice)
        assert after["live"] == "g2" and after["generations"]["g1"]["chunks"] == after["generations"]["g2"]["chunks"]
        hits = search(SearchRequest(q="greased and painted", k=3, mode=Mode.hybrid))
        assert hits and hits[0].key == "late.md"

        assert "live: g1" in _sluice(sluice, "rollback")
        location = Path(after["generations"]["g2"]["location"])
        assert location.is_dir()
        assert "dropped g2" in _sluice(sluice, "drop", "g2")
        assert not location.exists() and set(_listed(sluice)["generations"]) == {"g1"}
        _sluice(sluice, "drop", "g1", ok=False)  # the live one stays
    searches.check()  # none failed or came back empty during the build or a switch


def test_an_index_in_another_space_than_the_configured_embedder_keeps_working_and_says_how_to_move(fp32_sluice):
    sluice = fp32_sluice
    from schemas.search import Mode, SearchRequest
    from workers.client import search
    from workers.runtime.flow import EMBEDDED_QUERY_QUEUES

    sluice.stop("query")
    sluice.env["SLUICE_EMBED_BACKEND"] = "auto"  # the new default on a CPU: int8
    sluice.start("query", "query-worker", "--name", "query@test", "--queues", ",".join(EMBEDDED_QUERY_QUEUES))
    sluice.wait_for_workers({"query@test"})
    listed = _listed(sluice)
    assert listed["generations"]["g1"]["space"] == "all-MiniLM-L6-v2"
    assert "sluice generation create --embed-backend onnx-int8" in (listed["mismatch"] or "")
    assert "sluice generation create" in sluice.log("query")
    status = json.loads(cli(sluice.env, "status", "--json", cwd=sluice.root).stdout)
    assert status["index"]["generation"] == "g1" and "sluice generation create" in status["index"]["note"]
    hits = search(SearchRequest(q=QUERY, k=3, mode=Mode.dense))  # queries still embedded in the index's own space
    assert hits and hits[0].key == "water-treatment-handbook.md"
