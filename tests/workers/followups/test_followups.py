"""``SLUICE_FOLLOWUPS=false``: a plain search index, with no graph or summary work per document."""

from __future__ import annotations


from harness import SAMPLES, Sluice
from schemas.search import Mode, SearchRequest



def test_followups_off_indexes_without_graph_or_summaries(tmp_path):
    s = Sluice(tmp_path / "sluice", followups="false")
    s.start_workers()
    try:
        from workers import client
        from workers.followups.summaries import stored_summary
        from workers.query.tasks import graph_query
        from workers.runtime.config import settings

        st = client.connect(settings())
        report = client.ingest(st, settings(), client.events_for([SAMPLES], settings()), wait=True)
        assert report.failed == [] and report.indexed == report.documents == len(list(SAMPLES.iterdir()))
        assert st.in_flight() == 0  # every event released at upsert: nothing waits on graph or summary
        hits = client.search(SearchRequest(q="how often are the sand filters cleaned", mode=Mode.dense))
        assert hits[0].key == "water-treatment-handbook.md"
        assert all(stored_summary(st, h.doc_id) is None for h in hits)
        assert graph_query.apply_async(("stats", {})).get(timeout=60)["entities"] == 0
    finally:
        s.close()
