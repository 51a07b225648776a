"""Redis may lose everything it knows about documents; the index (Qdrant) still decides.

A private sluice with real workers: a folder is ingested, its Redis forgets the
documents and their events, a file is removed, and the folder is ingested again.
"""

from __future__ import annotations

import json


from harness import Sluice, cli, searchable


def _ingest(sluice: Sluice, folder) -> dict:  # type: ignore[no-untyped-def]
    result = cli(sluice.env, "ingest", str(folder), "--wait", "--json", cwd=sluice.root)
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)


def test_a_delete_reaches_the_index_after_redis_forgot_the_document(sluice):
    from workers.client import connect
    from workers.runtime.config import settings

    docs = sluice.root / "docs"
    docs.mkdir()
    (docs / "gone.txt").write_text("The wimbrelfoot survey of the lower weir, soon to be removed.")
    (docs / "kept.txt").write_text("The kept note about the upper weir and its eel pass.")
    assert _ingest(sluice, docs)["indexed"] == 2
    assert searchable("wimbrelfoot")

    r = connect(settings()).r  # Redis forgot all sluice recorded (only Celery's queue bindings are left)
    r.delete(*r.keys("sluice:*"))
    (docs / "gone.txt").unlink()

    report = _ingest(sluice, docs)
    assert report["deleted"] == 1, report
    assert report["chunks_embedded"] == 0, report  # the kept file's chunks are still in the index
    assert not searchable("wimbrelfoot") and searchable("eel pass")
