"""`sluice bench chaos`: one SIGKILL of each kind during a small ingest loses, duplicates and strands nothing;
every document ends at its last version."""

from __future__ import annotations

import json

from harness import cli, no_traceback


def test_bench_chaos_one_kill_of_each_kind_loses_nothing(tmp_path):
    import os

    result = cli(dict(os.environ), "bench", "chaos", "--docs", "30", "--kills", "1", "--json", cwd=tmp_path, timeout=900)
    no_traceback(result)
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(result.stdout)
    # every kill lands on work in progress: an ingest that ends first is followed by a round of edits
    assert figures["kills"] == {"pipeline_child": 1, "pipeline_worker": 1, "query_worker": 1, "redis": 1}, figures
    assert figures["indexed"] + figures["dead_lettered"] == figures["documents_expected"] == 30, figures
    assert (figures["lost"], figures["duplicate_points"], figures["left_in_flight"]) == (0, 0, 0), figures
    print(figures)
