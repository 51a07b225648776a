"""Generations on the server backend through the real workers: the live generation is named by the Qdrant
collection alias ``<collection>-live``, moved in one request at a switch and a rollback.

No Qdrant server binary ships in a package this project installs, so the query worker runs qdrant-client's
local mode (``QDRANT_URL=:memory:``): the server API, aliases included, in the index owner's memory (only
the query worker opens the index). Searches run throughout and never fail or come back empty.
"""

from __future__ import annotations

import json

import pytest

from harness import Sluice, cli
from live_searches import LiveSearches

QUERY = "when is the brackwater sluice gate greased"


@pytest.fixture(scope="module")
def server_sluice(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("QDRANT_URL", ":memory:")
        running = Sluice(tmp_path_factory.mktemp("server"), followups="false")
        try:
            running.start_workers()
            yield running
        finally:
            running.close()


def _generation(sluice: Sluice, *args: str) -> str:
    result = cli(sluice.env, "generation", *args, cwd=sluice.root, timeout=300)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stdout + result.stderr
    return result.stdout


def _listed(sluice: Sluice) -> dict:
    return json.loads(_generation(sluice, "list", "--json"))


def _ingest(sluice: Sluice, name: str, text: str) -> None:
    from workers import client
    from workers.runtime.config import settings

    path = sluice.root / "docs" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    report = client.ingest(client.connect(settings()), settings(), client.events_for([path], settings()), wait=True)
    assert report.failed == [], report


def test_the_alias_names_the_live_generation_and_moves_at_a_switch_and_a_rollback(server_sluice):
    sluice = server_sluice
    from schemas.search import Mode, SearchRequest
    from workers.client import search

    _ingest(sluice, "gate.md", "# Gate log\n\nThe brackwater sluice gate is greased every Tuesday.\n")
    _ingest(sluice, "filters.md", "# Filters\n\nSand filters are backwashed every thirty hours.\n")
    first = _listed(sluice)
    assert first["live"] == "g1" and first["alias"] == {"name": "sluice-live", "collection": "sluice"}

    with LiveSearches(QUERY, k=3) as searches:
        _generation(sluice, "create")
        _generation(sluice, "compare")
        assert "live: g2" in _generation(sluice, "switch")
        switched = _listed(sluice)
        assert switched["alias"]["collection"] == "sluice-g2" == switched["generations"]["g2"]["location"]
        assert switched["generations"]["g2"]["chunks"] == switched["generations"]["g1"]["chunks"] > 0

        _ingest(sluice, "gate.md", "# Gate log\n\nThe brackwater sluice gate is greased and painted.\n")
        hits = search(SearchRequest(q="greased and painted", k=3, mode=Mode.hybrid))
        assert hits and hits[0].key == "gate.md" and "painted" in hits[0].text

        assert "live: g1" in _generation(sluice, "rollback")
        back = _listed(sluice)
        assert back["alias"]["collection"] == "sluice" and back["live"] == "g1"
        hits = search(SearchRequest(q="greased and painted", k=3, mode=Mode.hybrid))  # the change reached g1 too
        assert hits and hits[0].key == "gate.md" and "painted" in hits[0].text
        _generation(sluice, "drop", "g2")
        assert set(_listed(sluice)["generations"]) == {"g1"}
    searches.check()  # none failed or came back empty during the build, the switch or the rollback
